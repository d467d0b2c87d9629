"""`make demo`: the whole Tiny Stories pipeline on the embedded synthetic corpus, on a CPU, in a few
minutes — each step is one of the real scripts, run with the command it prints:

    1. tiny_tokenize_natural.py   synthetic stories → natural tokens (the corpus's whole vocabulary)
    2. tiny_self_attn_natural.py  3-layer attention-only model, plain SGD, cosines with theory logged
    3. tiny_plot_logs.py          training curves (PNG + PDF)
    4. tiny_causal.py             loss change when each weight loses its theory direction
The association report (associations.md) is written by step 2 and lists the planted pairs
(bird → flew, dog → barked, …) among the strongest partners of B̄ and of the trained W_O.

The demo stops at ηs ≈ 41 (η = 0.45, 92 steps of 64 sequences): the end of the early regime, where the
leading terms still describe every weight's direction (docs/results.md §1) while the loss has started to fall. Training
longer (--epochs=3 on the training command) shows the regime ending: the loss drops quickly and the
cosines of W and P fall first.
Outputs go to --out_dir (replaced on every run).

Usage:
    python demo.py                      # or: make demo
    python demo.py --out_dir=out/demo2
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common.config import override
from common.io import exit_on_user_error

out_dir = "out/demo"            # everything the demo writes (replaced on every run)

ROOT = Path(__file__).resolve().parent
_PLANTED = "bird,dog,cow,fish,owl,robot"


def demo_steps(out: Path) -> list:
    """The demo's commands, each a script of the project with its arguments."""
    return [
    ["tiny_tokenize_natural.py", "--data=synthetic", "--n_stories=3000", "--seq_len=64", f"--out_dir={out / 'data'}"],
    ["tiny_self_attn_natural.py", f"--data_dir={out / 'data'}", f"--out_dir={out / 'run'}", "--seq_len=64",
     "--batch_size=64", "--epochs=2", "--lr=0.45", "--log_every=0.2", "--save_every=1", "--report_tokens=8",
     f"--report_words={_PLANTED}"],
    ["tiny_plot_logs.py", f"--log={out / 'run' / 'training_logs.json'}", "--title=demo: synthetic stories, 3 layers"],
    ["tiny_causal.py", f"--out_dir={out / 'run'}", "--eval_sequences=300", "--progress=False"],
    ]


def main(out: Path) -> int:
    from common.theory.weight_kinds import WEIGHT_KINDS, parse_log_key

    start = time.time()
    if out.exists():
        shutil.rmtree(out)
    for step in demo_steps(out):
        command = [sys.executable, *step]
        print("\n$ python " + " ".join(step), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            print(f"demo: step {step[0]} failed", file=sys.stderr)
            return 1
    last = json.loads((out / "run" / "training_logs.json").read_text())[-1]
    print(f"\ndemo finished in {time.time() - start:.0f} s")
    print(f"  training curves   {out / 'run' / 'training_curves.png'} (and .pdf)")
    print(f"  association report {out / 'run' / 'associations.md'}")
    print(f"  association explorer {out / 'run' / 'explorer.html'} (open in a browser; #token=bird selects a token)")
    print(f"  causal ablation   {out / 'run' / 'causal.json'}")
    print(f"final cosines (step {last['step']}, epoch {last['epoch']:.2f}, loss {last['loss']:.3f}):")
    cosines = {}   # kind → [(layer, cosine)]
    for key, value in last.items():
        parsed = parse_log_key(key)
        if parsed and parsed.reference == "corpus" and not parsed.rel_err:
            cosines.setdefault(parsed.kind, []).append((parsed.layer, value))
    for kind in WEIGHT_KINDS:
        name = f"{kind.name} vs {kind.symbol}"
        print(f"  {name:<15} " + "  ".join(f"{value:.3f}" if layer is None else f"layer {layer}: {value:.3f}"
                                          for layer, value in sorted(cosines.get(kind.name, []),
                                                                     key=lambda p: p[0] or 0)))
    return 0


if __name__ == "__main__":
    with exit_on_user_error():
        override(globals())
        sys.exit(main((ROOT / out_dir) if not Path(out_dir).is_absolute() else Path(out_dir)))
