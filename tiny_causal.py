"""Causal ablation of a trained model (docs/theory.md §5): remove from each weight its projection on its
theoretical matrix (W_O on B̄, V on (B̄Φ̄)ᵀ, W on Q̄, P on p̄), one weight at a time, and report the
change of the loss on the training sequences. Prints a table and writes JSON.
Every run with leading terms (docs/theory.md §16): the matrices are the model variant's (identity output: no
W_O, V on Φ̄ₘᵀ) from the run's own statistics, and the loss is the run's objective — for a masked run the
mean over the selected positions of one corruption of the sequences, the same for every ablation.

Usage:
    python tiny_causal.py --out_dir=out/natural                    # newest checkpoint of that run
    python tiny_causal.py --checkpoint=out/natural/checkpoints/step_00001000.safetensors
    python tiny_causal.py --out_dir=out/natural --eval_sequences=2000 --device=cuda
Runs in one process (no torchrun needed).
"""
from common.config import override
from common.io import exit_on_user_error

out_dir = "out/natural"     # run folder (its newest checkpoint, unless --checkpoint is given)
checkpoint = ""             # a checkpoint .safetensors file
data_dir = ""               # tokenized data (default: the folder recorded in the checkpoint)
eval_sequences = 0          # evaluate on the first N training sequences (0: all)
corruption_seed = 0         # masked runs: the seed of the one corruption every loss is evaluated under
batch_size = 64             # sequences per forward pass
output = ""                 # JSON output (default: causal.json in out_dir)
device = "auto"             # auto, cpu, cuda
deterministic = True        # deterministic kernels: the same numbers on every run (False: faster)
progress = True

if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        from pathlib import Path

        from common.tiny.causal import causal_ablation, format_table, run_objective
        from common.device import configure_numerics, resolve_device
        resolve_device(device)                      # a mistyped device fails before any work
        from common.io import UserError, read_json, write_json
        from common.tiny.training import checkpoint_paths, load_run
        if not checkpoint:
            found = checkpoint_paths(out_dir)
            if not found:
                raise UserError(f"no checkpoint in {Path(out_dir) / 'checkpoints'}; train first or pass --checkpoint")
            checkpoint = found[-1]
        configure_numerics(deterministic)
        sidecar = Path(checkpoint).with_suffix(".json")   # a run without leading terms is refused before any work
        scheme = run_objective(read_json(sidecar, "checkpoint metadata") if sidecar.exists() else {})
        model, tokens, vocabulary, stats, meta = load_run(checkpoint, data_dir, device, progress)
        result = causal_ablation(model, stats, tokens[:eval_sequences] if eval_sequences else tokens,
                                 batch_size, progress, scheme, corruption_seed)
        result.update(checkpoint=str(checkpoint), step=meta["step"], sequences=eval_sequences or len(tokens))
        path = Path(output or Path(checkpoint).parent.parent / "causal.json")
        write_json(path, result)
        print(format_table(result))
        print(f"written to {path}")
