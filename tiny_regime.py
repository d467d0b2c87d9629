"""Where does the early regime end?  Predict, per weight kind, the τ = ηs at which the leading terms stop
describing the weights (from the corpus statistics alone), then train at several learning rates and
measure it (docs/theory.md §10).

Usage:
    python tiny_tokenize_natural.py --data=synthetic --n_stories=3000 --out_dir=data/synthetic
    python tiny_regime.py --data_dir=data/synthetic --out_dir=out/regime     # or: make demo-regime
    python tiny_regime.py --lrs=0.1,0.3,1.0 --threshold=0.05 --tau_max=60
Writes --out_dir/{regime.json, regime.png, regime.pdf, regime.md, runs/lr_<η>/} (replaced as a whole,
only when everything succeeded).  Predicted τ*: ‖next-order terms‖/‖leading term‖ reaches the
threshold; measured τ*: the worst layer's relative error to the path-exact prediction reaches it.
"""
from common.config import override
from common.io import exit_on_user_error

data_dir = "data/synthetic"     # output folder of tiny_tokenize_natural.py
out_dir = "out/regime"          # regime.json, regime.png/.pdf, regime.md and one training run per lr
lrs = [0.3, 1.0, 3.0]           # learning rates (the runs should collapse onto one curve against τ = ηs)
threshold = 0.1                 # relative error that ends the early regime, in (0, 1)
tau_max = 45.0                  # train each run until τ = ηs reaches this
seq_len = 64                    # T (the demo's)
n_layers = 3
batch_size = 64
grad_accum = 1
max_sequences = 0               # use only the first N sequences (0: all)
seed = 42
device = "cpu"                  # cpu, cuda, auto
deterministic = True            # deterministic kernels: same data, settings, seed → same bytes (False: faster)
progress = True

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        from common.tiny.regime import run_regime
        print(run_regime(dict(globals())))
