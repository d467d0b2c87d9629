"""Embedded synthetic story corpus: the project's default, offline training text.

This is NOT Tiny Stories and never pretends to be. It is a small, deterministic
generator of simple English children's stories written with the Python standard
library only (``random.Random(seed)``), so that the whole pipeline (tokenizer,
corpus statistics, training, comparison of weights with the gradient leading
terms) runs on a machine without network access or downloaded data sets.

Unlike a natural corpus, the statistics we want to recover are *planted*, so a
test can check that they really are in the text:

* ``PLANTED_VERBS`` (bigram / next-token association). Each planted subject
  noun is tied to one or two verbs, and in the stories the noun is immediately
  followed by one of its verbs most of the time ("the bird flew over the
  hill ."). In the bigram statistics P(x=noun, y=.) the planted verbs are
  therefore the top entries of the noun's row.
* ``INTERCHANGEABLE_PAIRS`` (interchangeability). The two nouns of a pair have
  exactly the same planted verbs ("puppy"/"dog" are both followed by
  "barked"/"ran"), so their next-token rows are alike although they are
  different tokens.
* ``TOPICS`` (story-level co-occurrence). Each story picks one topic and draws
  nearly all of its animals, places and objects from that topic's words, so
  words of one topic co-occur inside a context window far more often than
  words of different topics. Topic word lists are disjoint.

Everything else (names, adjectives, feelings, function words...) is shared by
all topics and carries no planted structure.

Public API: ``generate_stories``, ``generate_labelled_stories``,
``vocabulary_words``, ``PLANTED_VERBS``, ``INTERCHANGEABLE_PAIRS``, ``TOPICS``.
Stories are single lines (sentences joined by spaces, no blank line inside), so
a caller may join them with blank lines when writing a ``.txt`` file.
"""

from __future__ import annotations

import random
import re
import string

__all__ = [
    "PLANTED_VERBS",
    "INTERCHANGEABLE_PAIRS",
    "TOPICS",
    "generate_stories",
    "generate_labelled_stories",
    "vocabulary_words",
]

# ---------------------------------------------------------------------------
# Planted truth
# ---------------------------------------------------------------------------

# Subject noun -> the only verb(s) that follow it when it is the subject.
# These verbs are used nowhere else in the generator, so any "noun -> verb"
# signal in the bigram statistics comes from this table.
PLANTED_VERBS: dict[str, list[str]] = {
    # sea
    "fish": ["swam"],
    "whale": ["swam"],
    "crab": ["scuttled"],
    "gull": ["squawked"],
    # farm
    "cow": ["mooed"],
    "calf": ["mooed"],
    "horse": ["galloped", "neighed"],
    "pony": ["galloped", "neighed"],
    "hen": ["clucked"],
    "duck": ["flew"],
    # forest
    "bird": ["flew"],
    "owl": ["hooted"],
    "frog": ["jumped", "croaked"],
    # space
    "rocket": ["zoomed"],
    "robot": ["beeped"],
    "alien": ["glowed", "floated"],
    # town
    "dog": ["barked", "ran"],
    "puppy": ["barked", "ran"],
    "cat": ["purred"],
    "kitten": ["purred"],
    "bus": ["honked"],
    "car": ["honked"],
    # garden
    "bee": ["buzzed"],
    "butterfly": ["fluttered"],
    "snail": ["crawled"],
    "worm": ["wiggled"],
    # castle
    "dragon": ["roared"],
    "unicorn": ["pranced"],
}

# Pairs of nouns with identical planted verb lists (both members are keys of
# PLANTED_VERBS). A model that learned the association should treat them alike.
INTERCHANGEABLE_PAIRS: list[tuple[str, str]] = [
    ("dog", "puppy"),
    ("cat", "kitten"),
    ("bird", "duck"),
    ("fish", "whale"),
    ("cow", "calf"),
    ("horse", "pony"),
    ("car", "bus"),
]

# Per-topic word pools. "animals" are the story agents (planted and plain);
# plain animals get a generic verb, so they carry no verb association.
_TOPIC_PARTS: dict[str, dict[str, list[str]]] = {
    "sea": {
        "animals": ["fish", "whale", "crab", "gull", "turtle", "dolphin", "seal", "octopus"],
        "places": ["beach", "shore", "ocean", "harbor", "island", "dock", "reef",
                   "lighthouse", "cove", "pier"],
        "things": ["boat", "shell", "wave", "sand", "net", "bucket", "sail", "anchor",
                   "pearl", "seaweed", "towel", "spade", "sandcastle", "pebble", "oar"],
    },
    "farm": {
        "animals": ["cow", "calf", "horse", "pony", "hen", "duck", "pig", "sheep", "goat",
                    "donkey", "rooster", "lamb"],
        "places": ["barn", "field", "meadow", "pond", "stable", "orchard", "pen",
                   "farmhouse", "coop", "pasture"],
        "things": ["hay", "tractor", "fence", "egg", "corn", "apple", "pail", "milk",
                   "wagon", "straw", "carrot", "gate", "saddle", "pumpkin", "scarecrow"],
    },
    "forest": {
        "animals": ["bird", "owl", "frog", "fox", "bear", "deer", "rabbit", "squirrel",
                    "hedgehog", "badger", "wolf"],
        "places": ["woods", "cave", "stream", "hill", "clearing", "den", "trail",
                   "river", "valley", "waterfall"],
        "things": ["log", "leaf", "acorn", "mushroom", "berry", "pinecone", "stick",
                   "branch", "moss", "nest", "feather", "twig", "tent", "lantern", "compass"],
    },
    "space": {
        "animals": ["rocket", "robot", "alien", "astronaut", "comet", "satellite"],
        "places": ["moon", "planet", "station", "crater", "galaxy", "orbit", "mars",
                   "spaceport", "nebula", "asteroid"],
        "things": ["helmet", "telescope", "star", "button", "screen", "beam", "spacesuit",
                   "ladder", "antenna", "meteor", "signal", "engine", "fuel", "crystal",
                   "radio"],
    },
    "town": {
        "animals": ["dog", "puppy", "cat", "kitten", "bus", "car", "mouse", "hamster",
                    "parrot", "pigeon"],
        "places": ["park", "shop", "street", "bakery", "library", "school", "market",
                   "playground", "museum", "cafe", "bridge", "square"],
        "things": ["ball", "kite", "bike", "cake", "book", "toy", "balloon", "hat", "coin",
                   "ticket", "umbrella", "bench", "candy", "cookie", "scooter"],
    },
    "garden": {
        "animals": ["bee", "butterfly", "snail", "worm", "ant", "ladybug", "caterpillar",
                    "beetle", "spider"],
        "places": ["garden", "greenhouse", "shed", "lawn", "patch", "fountain",
                   "flowerbed", "hedge", "yard", "allotment"],
        "things": ["flower", "rose", "daisy", "tulip", "seed", "pot", "hose", "rake",
                   "shovel", "basket", "petal", "sunflower", "tomato", "vine", "sprout"],
    },
    "castle": {
        "animals": ["dragon", "unicorn", "knight", "king", "queen", "princess", "prince",
                    "wizard", "troll"],
        "places": ["castle", "tower", "moat", "dungeon", "hall", "kingdom", "courtyard",
                   "village", "drawbridge", "throne"],
        "things": ["crown", "sword", "shield", "wand", "potion", "treasure", "map", "jewel",
                   "cloak", "scroll", "key", "chest", "flag", "goblet", "trumpet"],
    },
}

# Topic -> all its words (animals + places + things), as a plain dict of lists.
TOPICS: dict[str, list[str]] = {
    topic: parts["animals"] + parts["places"] + parts["things"]
    for topic, parts in _TOPIC_PARTS.items()
}

_TOPIC_NAMES: list[str] = list(_TOPIC_PARTS)

# ---------------------------------------------------------------------------
# Shared (topic-free) word lists
# ---------------------------------------------------------------------------

# (name, pronoun set index): 0 = she/her, 1 = he/him.
_NAMES: list[tuple[str, int]] = [
    ("Lily", 0), ("Mia", 0), ("Anna", 0), ("Lucy", 0), ("Sue", 0), ("Emma", 0),
    ("Zoe", 0), ("Amy", 0), ("Kate", 0), ("Ella", 0), ("Ruby", 0), ("Nora", 0),
    ("Jane", 0), ("Beth", 0), ("Molly", 0), ("Lola", 0), ("Sara", 0), ("Tina", 0),
    ("Hannah", 0), ("Clara", 0), ("Julia", 0), ("Maya", 0), ("Alice", 0),
    ("Eva", 0), ("Fiona", 0), ("Olivia", 0),
    ("Tom", 1), ("Ben", 1), ("Sam", 1), ("Max", 1), ("Tim", 1), ("Jack", 1),
    ("Leo", 1), ("Jake", 1), ("Nick", 1), ("Dan", 1), ("Finn", 1), ("Ned", 1),
    ("Jay", 1), ("Owen", 1), ("Luke", 1), ("Paul", 1), ("Ted", 1), ("Hugo", 1),
    ("Oscar", 1), ("Adam", 1), ("Henry", 1), ("Noah", 1), ("Ethan", 1),
    ("Felix", 1), ("Peter", 1), ("Simon", 1),
]
_PRONOUNS = [
    {"he": "she", "him": "her", "his": "her", "kid": "girl"},
    {"he": "he", "him": "him", "his": "his", "kid": "boy"},
]

_ADJECTIVES = [
    "big", "small", "little", "tiny", "happy", "kind", "brave", "shy", "funny",
    "silly", "pretty", "old", "new", "soft", "loud", "quiet", "fast", "slow", "tall",
    "short", "warm", "cold", "bright", "dark", "shiny", "fluffy", "hungry", "busy",
    "gentle", "clever", "friendly", "noisy", "round", "smooth", "strong", "wild",
    "wet", "dry", "sunny", "lovely", "strange", "special", "magic", "wooden", "huge",
    "young", "fancy", "cozy", "grumpy", "lucky", "heavy", "light", "sparkly", "muddy",
    "sticky", "bumpy", "clean", "dirty", "enormous", "secret", "spotty", "striped",
    "fuzzy", "sweet", "tidy", "messy", "broken", "empty", "hidden", "famous",
    "playful", "shaggy", "crooked", "wobbly", "precious",
]
_COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "white",
           "black", "brown", "gray", "silver"]
_FEELINGS = ["happy", "sad", "scared", "excited", "proud", "angry", "tired",
             "surprised", "sorry", "glad", "worried", "calm", "lonely", "curious",
             "thankful", "nervous", "bored", "sleepy", "cheerful", "grateful"]
_VIRTUES = ["kind", "brave", "patient", "careful", "gentle", "honest", "helpful",
            "polite", "generous", "calm"]
_ADVERBS = ["slowly", "quickly", "happily", "quietly", "softly", "carefully",
            "gently", "proudly", "sadly", "loudly", "bravely", "sleepily"]
_RELATIVES = ["mom", "dad", "grandma", "grandpa", "sister", "brother", "aunt",
              "uncle", "teacher", "neighbor"]
_FOODS = ["bread", "cheese", "soup", "honey", "jam", "pie", "sandwiches", "grapes",
          "crumbs", "water", "cereal", "pancakes", "muffins", "juice", "peas",
          "porridge", "noodles", "toast", "rice", "lemonade", "popcorn"]
_GENERIC_PLACES = ["home", "house", "kitchen", "room", "bedroom", "window", "door",
                   "table", "porch", "stairs", "attic", "hallway", "bathroom", "basement"]
_GENERIC_THINGS = ["box", "bag", "pocket", "jar", "cup", "blanket", "backpack",
                   "drawer", "bowl", "sock", "suitcase", "lunchbox"]
_GAMES = ["tag", "chase", "catch", "pretend", "hide and seek"]
_TIMES = ["One day", "One morning", "Later", "After lunch", "That afternoon",
          "Soon", "Then", "The next day", "After a while", "In the evening",
          "Before dinner", "Suddenly"]
_DAYTIMES = ["day", "morning", "afternoon", "evening", "summer", "spring", "autumn",
             "winter", "weekend", "holiday"]
_WEATHER = ["sunny", "windy", "rainy", "cloudy", "snowy", "foggy", "warm", "cold"]
# Verbs for non-planted animals: shared by all of them, so no noun owns a verb.
# Disjoint from every planted verb.
_GENERIC_ANIMAL_VERBS = ["looked", "sat", "slept", "played", "walked", "waited",
                         "hid", "rested", "smiled", "stopped", "listened", "danced",
                         "wandered", "turned", "came"]
# Past-tense verbs for the children, transitive (take an object).
_KID_VERBS = ["found", "saw", "picked", "held", "took", "made", "built", "drew",
              "painted", "carried", "shared", "liked", "loved", "cleaned", "fixed",
              "lost", "watched", "hugged", "followed", "touched", "washed", "wrapped",
              "kicked", "caught", "dropped", "borrowed", "tossed", "packed",
              "polished", "counted"]
_EXCLAIMS = ["Hooray!", "Oh no!", "Yay!", "Hello!", "Thank you!", "Come here!",
             "Hurry up!", "Be quiet!", "Let us go!", "What a day!", "Help me!",
             "I did it!"]
_SAYS = ["said", "shouted", "whispered", "cried", "called", "yelled", "sang"]
_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------
# Fields (a capitalised field name means "capitalise the first letter"):
#   N, F       hero and friend names          he/his/him  hero pronouns
#   kid        girl/boy                       adj color feeling virtue adv rel food
#   place thing                               topic place / object (rarely leaks)
#   beast      an animal in object position (mostly a non-planted one)
#   act        "the <animal> <verb>": the planted-verb carrier
#   adverbial  what follows a verb ("over the hill", "all day", ...)
#   gplace gthing time daytime weather game  generic fillers

_OPENINGS = [
    "Once upon a time, there was a {adj} {kid} named {N}.",
    "One {daytime}, {N} went to the {place} with {his} {rel}.",
    "{N} was a {adj} {kid} who loved the {place}.",
    "There once was a {kid} named {N} who lived near the {place}.",
    "It was a {weather} {daytime}, and {N} wanted to go to the {place}.",
    "{N} and {his} friend {F} liked to play near the {place}.",
]

_BODY = [
    # planted-verb carriers: the animal is the subject, its verb comes next
    "{Act} {adverbial}.",
    "{Act} {adverbial}.",
    "{Time}, {act} {adverbial}.",
    "{N} saw that {act} {adverbial}.",
    "{N} and {F} watched as {act} {adverbial}.",
    "\"Look, {F}!\" said {N}. \"{Act}!\"",
    "\"Wow!\" said {F}. \"{Act} {adverbial}!\"",
    "{N} laughed when {act}.",
    "Then {act}, and {N} clapped.",
    # topic objects and places
    "{N} found a {adj} {thing} near the {place}.",
    "{He} wanted to show the {thing} to {F}.",
    "{N} felt {feeling} and {adv} walked to the {place}.",
    "{N} and {F} played with a {color} {thing} all day.",
    "The {place} was {adj} and {adj}.",
    "{N} {kidverb} a {thing} and put it in {his} {gthing}.",
    "\"I love the {place}!\" said {N}.",
    "{His} {rel} said, \"Be careful near the {place}, {N}.\"",
    "{N} asked, \"Why is the {thing} so {adj}?\"",
    "{Time}, {N} and {F} went to the {place} together.",
    "They sat by the {place} and ate {food}.",
    "{F} had a {color} {thing}, and {N} had a {adj} {thing}.",
    "\"Can I have the {thing}?\" asked {F}.",
    "\"Yes, you can,\" said {N}, and {he} smiled.",
    "{N} looked for the {thing} in the {gplace}, but it was not there.",
    "At the {place}, they played {game} until the sun went down.",
    "{N} {kidverb} a {adj} {thing} for {his} {rel}.",
    # animals in object position (few of them planted, see _beast)
    "{N} gave the {beast} some {food}.",
    "Then {N} saw a {adj} {beast} by the {place}.",
    "\"Can we play with the {beast}?\" asked {F}.",
    "{N} {kidverb} the {beast} and felt {feeling}.",
    # mood
    "{N} was very {feeling}.",
    "{He} smiled at {F}.",
    "The sun was {adj} and the sky was {color}.",
    "{N} did not know what to do.",
    "{F} gave {him} a big hug.",
    "\"{exclaim}\" {says} {N}.",
    "\"{exclaim}\" {says} {F}, and {N} giggled.",
    "{N} counted {number} clouds in the sky.",
    "The day was {weather}, and the wind was {adj}.",
    "It started to rain, so they hurried inside the {gplace}.",
    "{N} took a nap, and {he} dreamed of a {adj} {thing}.",
]

_ENDINGS = [
    "In the end, {N} was very {feeling}.",
    "From that day on, {N} and {F} always went back to the {place}.",
    "{N} went home and told {his} {rel} all about the {beast}.",
    "That night, {N} dreamed about the {place} and smiled.",
    "It was the best {daytime} ever.",
    "{N} learned to be {virtue}, and everyone was happy.",
    "They said goodbye to the {place} and went home.",
]

_ADVERBIALS = [
    "over the {place}", "near the {place}", "around the {thing}", "all day",
    "again and again", "very loudly", "{adv}", "to {N}", "with {F}",
    "past the {thing}", "in the {place}", "next to the {gplace}",
    "and looked at {N}", "for a long time",
]

# Probability that a topic field (place/thing/animal) is drawn from another
# topic instead of the story's own: a little noise, like real stories.
_LEAK = 0.06
# Probability that an object-position animal is a planted noun. Kept low so
# a planted noun is followed by its verb most of the time.
_BEAST_PLANTED = 0.25


def _compile(template: str) -> list[tuple[str, str | None]]:
    return [(lit, field) for lit, field, _, _ in string.Formatter().parse(template)]


_C_OPENINGS = [_compile(t) for t in _OPENINGS]
_C_BODY = [_compile(t) for t in _BODY]
_C_ENDINGS = [_compile(t) for t in _ENDINGS]
_C_ADVERBIALS = [_compile(t) for t in _ADVERBIALS]

# Split each topic's animals into planted / plain once.
_PLANTED_ANIMALS = {t: [a for a in p["animals"] if a in PLANTED_VERBS] for t, p in _TOPIC_PARTS.items()}
_PLAIN_ANIMALS = {t: [a for a in p["animals"] if a not in PLANTED_VERBS] for t, p in _TOPIC_PARTS.items()}


class _Ctx:
    """Per-story state: the random generator, the topic and the two children."""

    __slots__ = ("rng", "topic", "hero", "friend", "pro")

    def __init__(self, rng: random.Random, topic: str):
        self.rng = rng
        self.topic = topic
        i = rng.randrange(len(_NAMES))
        j = rng.randrange(len(_NAMES) - 1)
        if j >= i:  # friend differs from hero
            j += 1
        self.hero, g = _NAMES[i]
        self.friend = _NAMES[j][0]
        self.pro = _PRONOUNS[g]

    def topic_of_field(self) -> str:
        rng = self.rng
        if rng.random() < _LEAK:
            return rng.choice(_TOPIC_NAMES)
        return self.topic


def _animal_act(c: _Ctx) -> str:
    rng = c.rng
    t = c.topic_of_field()
    animal = rng.choice(_TOPIC_PARTS[t]["animals"])
    verbs = PLANTED_VERBS.get(animal)
    verb = rng.choice(verbs) if verbs else rng.choice(_GENERIC_ANIMAL_VERBS)
    return "the " + animal + " " + verb


def _beast(c: _Ctx) -> str:
    rng = c.rng
    t = c.topic_of_field()
    pool = _PLANTED_ANIMALS[t] if rng.random() < _BEAST_PLANTED else _PLAIN_ANIMALS[t]
    return rng.choice(pool)


_FIELDS = {
    "N": lambda c: c.hero,
    "F": lambda c: c.friend,
    "he": lambda c: c.pro["he"],
    "his": lambda c: c.pro["his"],
    "him": lambda c: c.pro["him"],
    "kid": lambda c: c.pro["kid"],
    "adj": lambda c: c.rng.choice(_ADJECTIVES),
    "color": lambda c: c.rng.choice(_COLORS),
    "feeling": lambda c: c.rng.choice(_FEELINGS),
    "virtue": lambda c: c.rng.choice(_VIRTUES),
    "adv": lambda c: c.rng.choice(_ADVERBS),
    "rel": lambda c: c.rng.choice(_RELATIVES),
    "food": lambda c: c.rng.choice(_FOODS),
    "gplace": lambda c: c.rng.choice(_GENERIC_PLACES),
    "gthing": lambda c: c.rng.choice(_GENERIC_THINGS),
    "game": lambda c: c.rng.choice(_GAMES),
    "time": lambda c: c.rng.choice(_TIMES),
    "daytime": lambda c: c.rng.choice(_DAYTIMES),
    "weather": lambda c: c.rng.choice(_WEATHER),
    "kidverb": lambda c: c.rng.choice(_KID_VERBS),
    "exclaim": lambda c: c.rng.choice(_EXCLAIMS),
    "says": lambda c: c.rng.choice(_SAYS),
    "number": lambda c: c.rng.choice(_NUMBERS),
    "place": lambda c: c.rng.choice(_TOPIC_PARTS[c.topic_of_field()]["places"]),
    "thing": lambda c: c.rng.choice(_TOPIC_PARTS[c.topic_of_field()]["things"]),
    "beast": _beast,
    "act": _animal_act,
    "adverbial": lambda c: _fill(c.rng.choice(_C_ADVERBIALS), c),
}


def _fill(segments: list[tuple[str, str | None]], c: _Ctx) -> str:
    out = []
    for lit, field in segments:
        if lit:
            out.append(lit)
        if field is not None:
            gen = _FIELDS.get(field)
            if gen is not None:
                out.append(gen(c))
            else:  # capitalised field name: generate, then capitalise
                s = _FIELDS[field[0].lower() + field[1:]](c)
                out.append(s[:1].upper() + s[1:])
    return "".join(out)


def _story(rng: random.Random, topic: str) -> str:
    c = _Ctx(rng, topic)
    sentences = [_fill(rng.choice(_C_OPENINGS), c)]
    # 5..12 body sentences + opening + ending = 7..14 sentences, ~70-180 words
    prev = None
    for _ in range(rng.randint(5, 12)):
        tpl = rng.choice(_C_BODY)
        if tpl is prev:  # avoid the same sentence pattern twice in a row
            tpl = rng.choice(_C_BODY)
        prev = tpl
        sentences.append(_fill(tpl, c))
    sentences.append(_fill(rng.choice(_C_ENDINGS), c))
    return " ".join(sentences)


def generate_labelled_stories(n_stories: int, seed: int = 0) -> list[tuple[str, str]]:
    """Return ``n_stories`` pairs ``(topic, story)``; deterministic in ``seed``.

    ``generate_stories(n, seed)`` returns exactly the story strings of this list.
    """
    if n_stories < 0:
        raise ValueError(f"n_stories must be >= 0, got {n_stories}")
    rng = random.Random(seed)
    out = []
    for _ in range(n_stories):
        topic = rng.choice(_TOPIC_NAMES)
        out.append((topic, _story(rng, topic)))
    return out


def generate_stories(n_stories: int, seed: int = 0) -> list[str]:
    """Return ``n_stories`` synthetic stories (one line each); same seed, same list."""
    return [s for _, s in generate_labelled_stories(n_stories, seed)]


_WORD_RE = re.compile(r"[a-z]+")


def vocabulary_words() -> list[str]:
    """All words the generator can emit: lower-case letter runs, sorted."""
    texts: list[str] = []
    texts += _OPENINGS + _BODY + _ENDINGS + _ADVERBIALS
    texts += [n for n, _ in _NAMES]
    texts += [w for p in _PRONOUNS for w in p.values()]
    for lst in (_ADJECTIVES, _COLORS, _FEELINGS, _VIRTUES, _ADVERBS, _RELATIVES, _FOODS,
                _GENERIC_PLACES, _GENERIC_THINGS, _GAMES, _TIMES, _DAYTIMES, _WEATHER,
                _GENERIC_ANIMAL_VERBS, _KID_VERBS, _EXCLAIMS, _SAYS, _NUMBERS):
        texts += lst
    for parts in _TOPIC_PARTS.values():
        for lst in parts.values():
            texts += lst
    for verbs in PLANTED_VERBS.values():
        texts += verbs
    words: set[str] = set()
    for t in texts:
        # template field names ({adj}, {N}...) are not emitted words
        words.update(_WORD_RE.findall(re.sub(r"\{[^}]*\}", " ", t).lower()))
    return sorted(words)


def _check_tables() -> None:
    """Import-time sanity checks on the planted truth (cheap, catches edits)."""
    seen: dict[str, str] = {}
    for topic, words in TOPICS.items():
        for w in words:
            assert w not in seen, f"{w!r} in topics {seen[w]!r} and {topic!r}"
            seen[w] = topic
    for a, b in INTERCHANGEABLE_PAIRS:
        assert PLANTED_VERBS[a] == PLANTED_VERBS[b], (a, b)
    for noun in PLANTED_VERBS:
        assert noun in seen, f"planted noun {noun!r} belongs to no topic"
    planted = {v for vs in PLANTED_VERBS.values() for v in vs}
    assert not planted & set(_GENERIC_ANIMAL_VERBS + _KID_VERBS + _SAYS)
    # ...and no template text uses a planted verb either (e.g. "ran")
    template_text = " ".join(_OPENINGS + _BODY + _ENDINGS + _ADVERBIALS + _EXCLAIMS + _TIMES)
    template_words = set(_WORD_RE.findall(re.sub(r"\{[^}]*\}", " ", template_text).lower()))
    assert not planted & template_words, sorted(planted & template_words)
    # topic words must not be emitted by the shared lists either
    shared = set(_ADJECTIVES + _COLORS + _FEELINGS + _FOODS + _GENERIC_PLACES
                 + _GENERIC_THINGS + _DAYTIMES + _WEATHER + _KID_VERBS)
    assert not shared & set(seen), sorted(shared & set(seen))


_check_tables()
