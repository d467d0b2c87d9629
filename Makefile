# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing and installs the package into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# CPU build of torch (a local wheel on our machines). GPU users: see README, "Installing for a GPU".
TORCH  ?= torch==2.13.0

.PHONY: demo demo-pythia demo-seeds demo-bert demo-regime demo-topics test test-slow bench venv clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q ".[test]"   # the dependencies; `common` is used in place (pyproject.toml)
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) demo.py

# Pythia pipeline offline: small Pythia-style checkpoints on the synthetic corpus, both comparisons (every revision;
# the per-head one for both layers), both plots
demo-pythia: $(VENV)/.installed
	rm -rf out/demo_pythia
	$(PY) train_neox_checkpoints.py --out_dir=out/demo_pythia/checkpoints --max_steps=2000
	$(PY) pythia.py --model_name=out/demo_pythia/checkpoints --revisions=all --dataset=synthetic \
		--n_examples=4000 --max_seq_len=64 --output_dir=out/demo_pythia/results --cache_dir=out/demo_pythia/cache
	for layer in 0 1; do $(PY) pythia_per_head.py --model_name=out/demo_pythia/checkpoints --revisions=all \
		--target_layer=$$layer --dataset=synthetic --n_examples=4000 --max_seq_len=64 \
		--output_dir=out/demo_pythia/results --cache_dir=out/demo_pythia/cache || exit 1; done
	$(PY) plot_cosine_similarity.py --results_dir=out/demo_pythia/results
	$(PY) plot_per_head_similarity.py --results_dir=out/demo_pythia/results

# Several seeds (docs/theory.md §15): three seeds of the small Pythia-style model on one corpus and tokenizer, the
# comparison over all of them (statistics once), the aggregate with 95% t-intervals (out/demo_seeds/results)
demo-seeds: $(VENV)/.installed
	rm -rf out/demo_seeds
	$(PY) train_neox_checkpoints.py --seeds=1,2,3 --max_steps=512 --out_dir=out/demo_seeds/checkpoints
	$(PY) pythia.py '--model_name=out/demo_seeds/checkpoints/seed{1..3}' --revisions=all --dataset=synthetic \
		--n_examples=4000 --max_seq_len=64 --output_dir=out/demo_seeds/results --cache_dir=out/demo_seeds/cache

# Masked-LM checkpoints (docs/theory.md §17): two seeds of a small BERT trained with the masked objective, written as
# MultiBERTs' repository-style folders seed{S}-step_{N}; the comparison with §16's masked statistics over both seeds
# (aggregate), both plots, the explorer and agreement (fill-in at a MASK); then BERT on LDA and the embedding measure
demo-bert: $(VENV)/.installed
	rm -rf out/demo_bert
	$(PY) train_neox_checkpoints.py --architecture=bert --seeds=1,2 --max_steps=512 --out_dir=out/demo_bert/checkpoints
	$(PY) pythia.py '--model_name=out/demo_bert/checkpoints/seed{1..2}-step_{revision}' --revisions=all \
		--dataset=synthetic --n_examples=2000 --max_seq_len=64 --output_dir=out/demo_bert/results \
		--cache_dir=out/demo_bert/cache
	$(PY) pythia_per_head.py '--model_name=out/demo_bert/checkpoints/seed{1..2}-step_{revision}' --revisions=all \
		--target_layer=0 --dataset=synthetic --n_examples=2000 --max_seq_len=64 \
		--output_dir=out/demo_bert/results --cache_dir=out/demo_bert/cache
	$(PY) plot_cosine_similarity.py --results_dir=out/demo_bert/results
	$(PY) plot_per_head_similarity.py --results_dir=out/demo_bert/results
	$(PY) train_neox_checkpoints.py --architecture=bert --dataset=lda --n_documents=2000 --max_steps=512 \
		--out_dir=out/demo_bert/lda_checkpoints
	$(PY) topic_embeddings.py '--model_name=out/demo_bert/lda_checkpoints/seed0-step_{revision}' \
		--out_dir=out/demo_bert/embeddings

# End of the early regime (docs/theory.md §10, §14): τ* predicted by the Taylor series of training against τ* measured
# at three learning rates, for W_O, V, W and P, and a run to paste (times of every demo: docs/benchmarks.md §1)
demo-regime: $(VENV)/.installed
	rm -rf out/demo_regime
	$(PY) tiny_tokenize_natural.py --data=synthetic --n_stories=3000 --out_dir=out/demo_regime/data
	$(PY) tiny_regime.py --data_dir=out/demo_regime/data --out_dir=out/demo_regime/regime

# Topic structure (docs/theory.md §11): LDA corpus → 3-layer model, weights and attention against the closed
# forms (out/demo_topics/structure); Pythia-style checkpoints on the same corpus and their embeddings.
# The masked objective: topic_structure.py --preset=li2023; what turns attention away: topic_ablation.py
# (docs/results.md §3)
demo-topics: $(VENV)/.installed
	rm -rf out/demo_topics
	$(PY) topic_structure.py --out_dir=out/demo_topics/structure
	$(PY) train_neox_checkpoints.py --dataset=lda --out_dir=out/demo_topics/checkpoints
	$(PY) topic_embeddings.py --model_name=out/demo_topics/checkpoints --out_dir=out/demo_topics/embeddings

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) out data
