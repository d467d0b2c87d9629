"""Topic measures (common/tiny/topic_structure.py, docs/theory.md §11): bins and binned means against brute-force
loops, the closed forms' sign pattern on an LDA corpus, topic_structure.py and topic_embeddings.py end to
end, and their bad inputs."""
import itertools
import json

import pytest
import torch

from common.io import UserError
from common.corpus.lda import LDAParameters, generate_lda, topic_table
from common.theory.leading_terms import predicted_weights
from common.theory.model import AttentionOnlyTransformer
from common.theory.statistics import compute_statistics
from common.corpus.lda import read_topic_table
from common.theory.topic_measures import (BINS, attention_means, binned_means, leading_term_model, pair_bins,
                                          row_cosines, row_gram, theory_measures, topic_order, vocabulary_topics,
                                          weight_measures)
from conftest import run_script

# 6 tokens: two topics, one token in both, one in none
TOPICS = [frozenset({0}), frozenset({0}), frozenset({0, 1}), frozenset({1}), frozenset({1}), frozenset()]


def brute_bin(a: int, b: int, topics=TOPICS):
    if not topics[a] or not topics[b]:
        return None
    return "same_token" if a == b else "same_topic" if topics[a] & topics[b] else "different_topic"


def brute_means(values, topics=TOPICS) -> dict:
    sums = {name: [] for name in BINS}
    for a, b in itertools.product(range(len(topics)), repeat=2):
        if brute_bin(a, b, topics):
            sums[brute_bin(a, b, topics)].append(float(values[a][b]))
    return {name: sum(v) / len(v) if v else None for name, v in sums.items()}


def test_pair_bins_and_binned_means_against_loops():
    bins = pair_bins(TOPICS)
    names = {0: "same_token", 1: "same_topic", 2: "different_topic", -1: None}
    for a, b in itertools.product(range(6), repeat=2):
        assert names[int(bins[a, b])] == brute_bin(a, b)
    values = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    assert binned_means(values, bins) == pytest.approx(brute_means(values.tolist()))
    assert topic_order(TOPICS) == ([0, 1, 2, 3, 4], [3])   # by first topic; the token without topics left out


def test_row_inner_products_and_cosines_against_loops():
    rows = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows[5] = 0
    inner = [[float(rows[a] @ rows[b]) for b in range(6)] for a in range(6)]
    norm = lambda v: float(v.norm()) or 1.0
    cosine = [[float(rows[a] @ rows[b]) / norm(rows[a]) / norm(rows[b]) for b in range(6)] for a in range(6)]
    assert torch.allclose(row_gram(rows), torch.tensor(inner, dtype=torch.float64))
    assert torch.allclose(row_cosines(rows), torch.tensor(cosine, dtype=torch.float64))
    assert binned_means(row_cosines(rows), pair_bins(TOPICS))["same_token"] == pytest.approx(1.0)


def test_attention_means_against_loops():
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(6, 5, 2, init_std=0.7)
    tokens = torch.randint(0, 6, (3, 5), generator=torch.Generator().manual_seed(2))
    measured = attention_means(model, tokens, pair_bins(TOPICS), batch_size=2)
    patterns = model.attention_patterns(tokens)
    for layer in range(2):
        sums = {name: [] for name in BINS}
        for n, t in itertools.product(range(3), range(5)):
            for s in range(t):
                name = brute_bin(int(tokens[n, t]), int(tokens[n, s]))
                if name:
                    sums[name].append(float(patterns[layer][n, t, s]))
        expected = {name: sum(v) / len(v) if v else None for name, v in sums.items()}
        assert measured[f"attention_layer_{layer}"] == pytest.approx(expected)


def test_weight_measures_and_the_leading_term_model():
    torch.manual_seed(1)
    model = AttentionOnlyTransformer(6, 5, 2, init_std=0.3)
    bins = pair_bins(TOPICS)
    measures = weight_measures(model, bins)
    assert set(measures) == {"W_O", "W_O_inner", "W_O_cosine"} | {
        f"{kind}_layer_{l}{suffix}" for l in range(2) for kind, suffix in
        (("V", ""), ("V", "_inner"), ("V", "_cosine"), ("W", ""))}
    assert measures["V_layer_1_inner"] == pytest.approx(brute_means((model.layers[1].V @ model.layers[1].V.T).tolist()))
    x = torch.randint(0, 6, (20, 6), generator=torch.Generator().manual_seed(3))
    stats = compute_statistics(x[:, :-1], x[:, 1:], 6)
    twin = leading_term_model(model, stats, lr=0.5, step=7)
    predicted = predicted_weights(stats, 0.5, 7)
    assert torch.allclose(twin.W_O, predicted["W_O"].float())
    assert all(torch.allclose(layer.W, predicted["W"].float()) for layer in twin.layers)
    assert not torch.allclose(model.W_O, twin.W_O)        # the trained model is left alone


def lda_statistics(params: LDAParameters, seq_len: int):
    corpus = generate_lda(params, 0)
    ids = corpus.word_ids.reshape(params.n_documents, params.min_length)[:, :seq_len + 1]
    tokens = torch.from_numpy(ids)
    return compute_statistics(tokens[:, :-1], tokens[:, 1:], len(corpus.words)), corpus


def test_closed_forms_carry_topics_on_an_lda_corpus():
    """docs/theory.md §11: every closed form has same-topic mean > 0 > different-topic mean."""
    params = LDAParameters(n_topics=4, words_per_topic=5, min_length=17, max_length=17, n_documents=400)
    stats, corpus = lda_statistics(params, 16)
    theory = theory_measures(stats, pair_bins([frozenset(corpus.table[w]) for w in corpus.words]))
    assert set(theory) == {"bigram", "interchangeability", "context", "value_map", "attention_map",
                           "bigram_gram", "bigram_cosine", "value_map_gram", "value_map_cosine"}
    for name, measure in theory.items():
        assert measure["same_topic"] > 0 > measure["different_topic"], name


def test_topic_table_format_and_missing_words(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"a": 0, "b": [0, "x"], "c": None, "d": []}))
    table = read_topic_table(path)
    assert table == {"a": [0], "b": [0, "x"], "c": [], "d": []}
    assert vocabulary_topics(["b", "a", "c"], table) == [frozenset({0, "x"}), frozenset({0}), frozenset()]
    with pytest.raises(UserError, match="misses 2 of the 4 vocabulary words"):
        vocabulary_topics(["a", "zz", "b", "yy"], table)
    path.write_text(json.dumps({"a": {"topic": 1}}))
    with pytest.raises(UserError, match="must be a number"):
        read_topic_table(path)


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


@pytest.mark.parametrize("args, message", [
    (["--words_per_topic=0"], "more topics"),
    (["--alpha=0"], "alpha"),
    (["--min_length=30", "--max_length=20"], "empty"),
    (["--seq_len=64"], "shorter than one sequence"),
    (["--data=corpus.txt"], "needs --topics"),
])
def test_bad_input_is_refused_before_anything_is_written(args, message, tmp_path):
    from common.tiny.topic_structure import _corpus
    config = {"n_topics": 3, "words_per_topic": 4, "alpha": 0.1, "min_length": 18, "max_length": 24,
              "n_documents": 10, "overlap": 0, "data": "lda", "topics": "", "heldout_documents": 2, "seq_len": 16,
              "seed": 0}
    for arg in args:
        key, value = arg[2:].split("=")
        config[key] = type(config[key])(value)
    with pytest.raises(UserError, match=message):
        _corpus(config)


def test_topic_embeddings_on_lda_checkpoints(tmp_path):
    """Pythia-style checkpoints trained on the LDA corpus (train_neox_checkpoints.py --dataset=lda:…): the
    embedding measure of every revision, equal to one computed by hand from the saved weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from common.checkpoints.topic_embeddings import run_topic_embeddings
    source = "lda:n_topics=3,words_per_topic=4,min_length=20,max_length=30"
    checkpoints, out = tmp_path / "ckpt", tmp_path / "emb"
    run_script("train_neox_checkpoints.py", f"--dataset={source}", "--n_documents=30", "--max_steps=2",
               "--hidden_size=16", "--n_layers=1", "--n_heads=2", "--batch_size=4", "--max_seq_len=16",
               f"--out_dir={checkpoints}")
    config = {"model_name": str(checkpoints), "revisions": "all", "dataset": source, "topics": "", "out_dir": out}
    run_topic_embeddings(config)          # in-process: this test has paid for importing transformers already
    result = json.loads((out / "topic_embeddings.json").read_text())
    assert [r["revision"] for r in result["revisions"]] == ["step0", "step1", "step2"]
    assert (out / "topic_embeddings.png").is_file() and (out / "topic_embeddings.pdf").is_file()
    table = topic_table(LDAParameters(n_topics=3, words_per_topic=4))
    folder = checkpoints / "step2"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    weight = AutoModelForCausalLM.from_pretrained(folder).get_input_embeddings().weight.detach().double()
    words = list(table)
    rows = weight[[tokenizer.convert_tokens_to_ids(w) for w in words]]
    topics = [frozenset(table[w]) for w in words]
    expected = brute_means((rows @ rows.T).tolist(), topics)
    assert result["revisions"][-1]["inner"] == pytest.approx(expected)
    with pytest.raises(UserError, match="--topics"):
        run_topic_embeddings(dict(config, dataset="synthetic", out_dir=tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
