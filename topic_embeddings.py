"""Li, Li & Risteski (2023)'s embedding measure on checkpointed causal LMs (docs/theory.md §11): for every
revision, the mean inner product (and cosine) of the input embeddings of same-topic and of
different-topic word pairs (and of a word with itself).

Usage:
    python train_neox_checkpoints.py --dataset=lda --out_dir=out/lda_checkpoints   # Pythia-style, on LDA
    python topic_embeddings.py --model_name=out/lda_checkpoints                    # → out/topic_embeddings
    python topic_embeddings.py --model_name=ckpts --topics=topics.json --revisions=step0,step512
    python train_neox_checkpoints.py --architecture=bert --dataset=lda --out_dir=out/bert_lda   # masked LM
    python topic_embeddings.py '--model_name=out/bert_lda/seed0-step_{revision}'              # docs/theory.md §17
--model_name: a local folder with one sub-folder per revision (or a hub name with --revisions), each
loadable by transformers with its tokenizer; every word of the table must be one token of it.
Writes --out_dir/{topic_embeddings.json, topic_embeddings.png/.pdf}.
"""
from common.config import override
from common.io import exit_on_user_error

model_name = "out/lda_checkpoints"   # checkpoint folder (one sub-folder per revision) or hub name
revisions = "all"                    # all (every revision of a local folder) or a comma-separated list
dataset = "lda"                      # the corpus the checkpoints were trained on (lda or lda:name=value,…)
topics = ""                          # or a word → topic table (JSON) for another corpus
out_dir = "out/topic_embeddings"

if __name__ == "__main__":
    with exit_on_user_error():
        from common.checkpoints.topic_embeddings import TopicEmbeddingsConfig, run_topic_embeddings
        result = run_topic_embeddings(TopicEmbeddingsConfig.from_settings(override(globals())))
        for record in result["revisions"]:
            inner, cosine = record["inner"], record["cosine"]
            print(f"{record['revision']:>12}  inner product: same topic {inner['same_topic']:+.3e}  "
                  f"different topic {inner['different_topic']:+.3e};  cosine {cosine['same_topic']:+.3f} / "
                  f"{cosine['different_topic']:+.3f}")
        print(f"wrote {out_dir}/topic_embeddings.json and topic_embeddings.png/.pdf")
