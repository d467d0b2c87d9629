"""The embedding measure over checkpoint revisions (common/checkpoints/topic_embeddings.py, docs/theory.md §11)."""
import json

import pytest
import torch

from common.checkpoints.topic_embeddings import TopicEmbeddingsConfig, run_topic_embeddings
from common.corpus.lda import LDAParameters, topic_table
from common.io import UserError
from conftest import brute_means, run_script


def test_topic_embeddings_on_lda_checkpoints(tmp_path):
    """Pythia-style checkpoints trained on the LDA corpus (train_neox_checkpoints.py --dataset=lda:…): the
    embedding measure of every revision, equal to one computed by hand from the saved weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = "lda:n_topics=3,words_per_topic=4,min_length=20,max_length=30"
    checkpoints, out = tmp_path / "ckpt", tmp_path / "emb"
    run_script("train_neox_checkpoints.py", f"--dataset={source}", "--n_documents=30", "--max_steps=2",
               "--hidden_size=16", "--n_layers=1", "--n_heads=2", "--batch_size=4", "--max_seq_len=16",
               f"--out_dir={checkpoints}")
    config = TopicEmbeddingsConfig(model_name=str(checkpoints), dataset=source, out_dir=str(out))
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
        run_topic_embeddings(TopicEmbeddingsConfig(model_name=str(checkpoints), dataset="synthetic",
                                                   out_dir=str(tmp_path / "bad")))
    assert not (tmp_path / "bad").exists()
