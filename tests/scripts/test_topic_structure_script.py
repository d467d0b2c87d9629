"""topic_structure.py as a user runs it (docs/theory.md §11): end to end on a tiny LDA corpus, and a real
corpus whose topic table misses a word."""
import json

import pytest

from common.corpus.lda import LDAParameters, generate_lda
from common.theory.topic_measures import BINS
from conftest import run_script


TINY = ["--n_topics=3", "--words_per_topic=4", "--min_length=18", "--max_length=24", "--n_documents=64",
        "--heldout_documents=8", "--seq_len=16", "--batch_size=16", "--epochs=2", "--lr=2.0", "--log_every=0.5",
        "--progress=False"]


def test_topic_structure_end_to_end(tmp_path):
    out = tmp_path / "topics"
    printed = run_script("topic_structure.py", *TINY, f"--out_dir={out}").stdout
    result = json.loads((out / "topic_structure.json").read_text())
    assert result["vocab_size"] == 12 and result["pairs"] == {"same_token": 12, "same_topic": 36,
                                                             "different_topic": 96}
    assert set(result["theory"]) >= {"bigram", "context", "interchangeability", "value_map", "value_map_gram",
                                     "attention_map"}
    assert all(set(m) == set(BINS) for m in result["theory"].values())
    steps = [entry["step"] for entry in result["trained"]]
    assert steps == [entry["step"] for entry in result["leading_terms"]] == [2, 4, 6, 8]
    keys = {"attention_layer_0", "attention_layer_2", "V_layer_0_inner", "V_layer_0_cosine", "W_O_cosine",
            "W_O_inner", "W_layer_1"}
    assert keys <= set(result["trained"][-1]) and keys <= set(result["leading_terms"][-1])
    assert result["theory"]["attention_map"]["same_topic"] > 0 > result["theory"]["attention_map"]["different_topic"]
    assert json.loads((out / "data" / "topics.json").read_text()) == generate_lda(
        LDAParameters(n_topics=3, words_per_topic=4, min_length=18, max_length=24), 0).table
    assert (out / "topic_structure.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "topic_structure.pdf").read_bytes()[:4] == b"%PDF"
    assert "closed forms:" in printed and "W_O_cosine" in printed


def test_real_corpus_needs_a_complete_table(tmp_path):
    params = LDAParameters(n_topics=3, words_per_topic=4, min_length=18, max_length=24, n_documents=40)
    corpus = generate_lda(params, 5)
    (tmp_path / "corpus.txt").write_text("\n\n".join(corpus.documents) + "\n")
    table = {word: f"topic{topics[0]}" for word, topics in corpus.table.items()}
    dropped = corpus.words[3]
    del table[dropped]
    (tmp_path / "table.json").write_text(json.dumps(table))
    out = tmp_path / "out"
    result = run_script("topic_structure.py", f"--data={tmp_path / 'corpus.txt'}", f"--topics={tmp_path / 'table.json'}",
                        "--heldout_documents=5", "--seq_len=16", "--progress=False", f"--out_dir={out}", check=False)
    assert result.returncode != 0 and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "misses 1 of the 12 vocabulary words" in lines[0] and dropped in lines[0]


def test_li2023_preset_attends_to_its_topic(tmp_path):
    """Li, Li & Risteski's release model (--preset=li2023: masked, one layer, no residual, identity output, Adam,
    both stages): uniform attention through the first stage, then same-topic keys above different-topic ones;
    settings given on the command line win over the preset's."""
    out = tmp_path / "li2023"
    run_script("topic_structure.py", "--preset=li2023", "--n_topics=3", "--words_per_topic=4", "--min_length=18",
               "--max_length=24", "--n_documents=400", "--heldout_documents=16", "--seq_len=16", "--epochs=4",
               "--uniform_attention_steps=10", "--log_every=0.5", "--progress=False", f"--out_dir={out}")
    result = json.loads((out / "topic_structure.json").read_text())
    settings = result["settings"]
    assert (settings["objective"], settings["n_layers"], settings["residual"], settings["output"], settings["optimizer"],
            settings["lr"], settings["batch_size"]) == ("masked", 1, False, "identity", "adam", 0.01, 40)
    assert settings["seq_len"] == 16 and settings["uniform_attention_steps"] == 10      # given: they win
    assert result["causal_attention"] is False and result["leading_terms"] == []      # Adam: no leading terms
    assert {"context_transpose_gram", "context_transpose_cosine"} <= set(result["theory"])
    first_stage = [e for e in result["trained"] if e["step"] <= 10]
    assert first_stage and all(e["W_layer_0"][b] == 0 and e["attention_layer_0"][b] == pytest.approx(1 / 16)
                               for e in first_stage for b in BINS)
    last = result["trained"][-1]["attention_layer_0"]
    assert last["same_topic"] > 1 / 16 > last["different_topic"]
    gram = result["trained"][-1]["V_layer_0_inner"]
    assert gram["same_topic"] > gram["different_topic"]                              # W_V rows group by topic


def test_masked_objective_measures_every_key(tmp_path):
    out = tmp_path / "masked"
    run_script("topic_structure.py", *TINY, "--objective=masked", "--n_layers=1", f"--out_dir={out}")
    result = json.loads((out / "topic_structure.json").read_text())
    assert result["causal_attention"] is False and result["settings"]["objective"] == "masked"
    assert [e["step"] for e in result["leading_terms"]] == [e["step"] for e in result["trained"]]   # SGD from zero
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["vocab_size"] == 12 and config["model_vocab_size"] == 13         # the words + MASK
    assert result["theory"]["context"]["same_topic"] > 0 > result["theory"]["context"]["different_topic"]
