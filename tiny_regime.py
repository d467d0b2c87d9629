"""Where does the early regime end?  Predict, per weight kind and layer, the τ = ηs at which the weights
leave their leading terms — from the Taylor series of training (docs/theory.md §14), with the series'
radius of convergence beside it — then train at several learning rates and measure it (docs/theory.md
§10).  Ends with a run to paste: the learning rate and step count that reach a chosen fraction of the
predicted end of the early regime (or pass it).

Usage:
    python tiny_tokenize_natural.py --data=synthetic --n_stories=3000 --out_dir=data/synthetic
    python tiny_regime.py --data_dir=data/synthetic --out_dir=out/regime     # or: make demo-regime
    python tiny_regime.py --lrs=0.1,0.3,1.0 --threshold=0.05 --tau_max=60 --order=8
    python tiny_regime.py --suggest_fraction=2 --suggest_steps=300          # a run twice past the end
    python tiny_regime.py --objective=masked --out_dir=out/regime_masked  # masked LM (attention over all positions)
Single process (the series and three short runs; --device=cuda moves both to a GPU).
Writes --out_dir/{regime.json, regime.png, regime.pdf, regime.md, runs/lr_<η>/} (replaced as a whole,
only when everything succeeded).  Predicted τ*: the series' remainder beyond the leading term reaches
the threshold relative to it (worst layer); measured τ*: the worst layer's relative error to the
path-exact prediction reaches it.
"""
from common.config import override
from common.io import exit_on_user_error

data_dir = "data/synthetic"     # output folder of tiny_tokenize_natural.py
out_dir = "out/regime"          # regime.json, regime.png/.pdf, regime.md and one training run per lr
lrs = (0.3, 1.0, 3.0)           # learning rates (the runs should collapse onto one curve against τ = ηs)
threshold = 0.1                 # relative error that ends the early regime, in (0, 1)
tau_max = 45.0                  # train each run until τ = ηs reaches this
order = 6                       # K: the series' coefficients c_1 … c_K (≥ 5: W and P lead with τ⁴)
series_sequences = 256          # sequences the series is computed on (a seeded sample; 0: all; cost linear in them:
                                # docs/results_series.md)
series_chunk = 16               # sequences per jet pass (memory grows with it, the result does not change)
suggest_fraction = 0.5          # the suggested run reaches this × the predicted end of the early regime (> 1: past it)
suggest_steps = 100             # in this many steps (η = τ / steps; more steps follow the flow more closely)
seq_len = 64                    # T (the demo's)
windows = False                 # every consecutive window of T+1 tokens, not each story's first (as the trainer)
n_layers = 3
batch_size = 64
grad_accum = 1
max_sequences = 0               # use only the first N sequences (0: all)
init_std = 0.0                  # the series needs zero initialisation (as the theory)
objective = "causal"            # causal (next token) or masked (masked LM, docs/theory.md §16; the runs redraw the
                                # corruption every step, the series is that of the objective averaged over
                                # series_draws fixed draws of the sample)
mask_prob = 0.15                # masked: the probability that a position carries the loss
mask_split = [0.8, 0.1, 0.1]    # masked: a loss position shows MASK / its own word / a random word
attention = "auto"              # auto (causal for causal, all positions for masked), causal or all
residual = True                 # False with output=identity: Li, Li & Risteski's variant (V leads at τ, W and P at τ²)
output = "trained"              # trained W_O, or identity (W_O frozen: logits = h^L)
series_draws = 4                # masked: corruption draws of the series' sample, stacked (cost linear in them)
seed = 42                       # training order and the series' sample
device = "cpu"                  # cpu, cuda, auto
deterministic = True            # deterministic kernels: same data, settings, seed → same bytes (False: faster)
progress = True

if __name__ == "__main__":
    with exit_on_user_error():
        from common.tiny.regime import RegimeConfig, run_regime, summary_lines
        settings = override(globals())
        summary = run_regime(RegimeConfig.from_settings(settings), log=print)
        print("\n".join(summary_lines(summary, settings["lrs"], out_dir)))
