"""A very small story corpus for the Tiny Stories tests: ~30 word types, planted pairs
(bird → flew, dog → barked, …), so tokenizing and training take milliseconds."""
import random

PLANTED = {"bird": "flew", "dog": "barked", "cat": "purred", "fish": "swam"}
PLACES = ["tree", "park", "house", "pond"]
ADJECTIVES = ["big", "small", "red", "happy"]


def tiny_stories(n: int = 120, seed: int = 0) -> list:
    rng = random.Random(seed)
    stories = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.randint(3, 7)):
            animal = rng.choice(list(PLANTED))
            sentence = rng.choice([
                f"The {rng.choice(ADJECTIVES)} {animal} {PLANTED[animal]} to the {rng.choice(PLACES)}.",
                f"A {animal} {PLANTED[animal]}, and Tom saw it!",
                f"Tom and Sue went to the {rng.choice(PLACES)}. The {animal} {PLANTED[animal]}.",
            ])
            sentences.append(sentence)
        stories.append(" ".join(sentences))
    return stories


def write_txt(path, stories) -> str:
    path.write_text("\n\n".join(stories) + "\n", encoding="utf-8")
    return str(path)
