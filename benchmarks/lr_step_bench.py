"""Why a small learning rate made CPU training crawl, and the remedy: the trainer's SGD steps from zero
initialisation on the same batches of the demo corpus at two learning rates, with the CPU's flushing
of subnormal floats off (as torch starts) and on (common.device.configure_numerics, the trainer's
setting), the four settings timed alternately, `rounds` times each, so that machine load falls on
all alike.

At η = 0.005 the weights V (∝ η²), W and P (∝ η⁴) are tiny, and the products of the forward and
backward passes that multiply them fall below float32's smallest normal number (1.2e-38); a CPU
computes with such subnormal numbers many times slower.  Flushing them to zero removes the cost; they
are below 1e-38 against weights of order η⁴ · 1e-9 or more, so no logged figure changes (the last
lines compare the weights after the same steps with flushing on and off).

The CPU's flush mode is a per-thread setting that a thread inherits when it is created, so it must
be set before torch starts its worker threads (the trainer sets it first): each timing therefore runs
in a fresh process of this script (`--measure`), which writes its final weights for the comparison.

    python benchmarks/lr_step_bench.py                         # the demo's size: V=712, T=64, B=64, L=3
    python benchmarks/lr_step_bench.py --steps=4 --rounds=1    # quicker
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import timed  # noqa: E402
from common.config import override  # noqa: E402
from common.device import configure_numerics  # noqa: E402
from common.io import load_tensors, save_tensors  # noqa: E402
from common.theory.model import AttentionOnlyTransformer  # noqa: E402
from common.tiny.training import sgd_step  # noqa: E402

from benchmarks.demo_size import *  # noqa: E402,F401,F403  (vocab_size, seq_len, batch_size, n_layers, lr, …)

small_lr = 0.005      # the trainer's default learning rate
steps = 8             # SGD steps from zero initialisation per timing (the weights stay tiny at small_lr)
rounds = 2            # alternating passes over the four settings (each setting's fastest pass is reported)
n_stories = 3000      # the demo corpus (synthetic stories, natural tokens, their whole vocabulary)
measure = ""          # internal: "η,flush,weights file": one timing, in the fresh process it needs

override(globals())


def demo_batches():
    """`steps` batches of `batch_size` sequences of the demo corpus, or of random tokens when
    `vocab_size` is not the corpus's (the tiny sizes of the tests)."""
    import datasets

    from common.corpus.synthetic import generate_stories
    from common.corpus.tokenize import story_sequences, tokenize_natural
    texts = datasets.Dataset.from_dict({"text": generate_stories(n_stories, seed)})
    kept, vocabulary, _, _ = tokenize_natural(texts, vocab_size=10**6, seq_len=seq_len)   # its whole vocabulary
    if len(vocabulary) == vocab_size:
        tokens = story_sequences(kept, seq_len, len(vocabulary))
    else:
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(vocab_size, (steps * batch_size, seq_len + 1), generator=generator)
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    tokens = tokens[order].long().to(device)
    return [tokens[(k * batch_size) % len(tokens):][:batch_size] for k in range(steps)]


def train_steps(learning_rate: float, batches):
    """(seconds, final weights) of len(batches) SGD steps from zero initialisation."""
    model = AttentionOnlyTransformer(vocab_size, seq_len, n_layers).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)

    def run():
        for batch in batches:
            sgd_step(model, optimizer, [(batch[:, :-1], batch[:, 1:])])
    _, seconds = timed(run, device=device)
    return seconds, {k: v.detach().clone() for k, v in model.state_dict().items()}


def measure_once(eta: float, flush: bool, weights_file: str) -> None:
    configure_numerics(deterministic=True, flush_denormal=flush)   # before torch's first worker thread
    seconds, weights = train_steps(eta, demo_batches())
    save_tensors(weights_file, weights, {"seconds": seconds})


def measure_in_fresh_process(eta: float, flush: bool, weights_file: Path):
    """(seconds, final weights) of one timing, measured by a fresh process of this script."""
    command = [sys.executable, __file__, f"--measure={eta},{flush},{weights_file}"] + [
        f"--{name}={globals()[name]}" for name in ("vocab_size", "seq_len", "batch_size", "n_layers", "steps",
                                                  "n_stories", "device", "seed")]
    done = subprocess.run(command, capture_output=True, text=True)   # (the tokenizer's bars stay quiet)
    if done.returncode != 0:
        sys.exit(f"the timing process failed:\n{done.stderr[-2000:]}")
    weights, meta = load_tensors(weights_file)
    return meta["seconds"], weights


if __name__ == "__main__":
    if measure:
        eta, flush, weights_file = measure.split(",", 2)
        measure_once(float(eta), flush == "True", weights_file)
        sys.exit(0)
    settings = [(eta, flush) for flush in (False, True) for eta in (small_lr, lr)]
    best, final = {s: float("inf") for s in settings}, {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for eta, flush in settings:
                seconds, final[eta, flush] = measure_in_fresh_process(eta, flush, Path(folder) / "weights.safetensors")
                best[eta, flush] = min(best[eta, flush], seconds)
    print(f"{steps} SGD steps from zero on {device}: V={vocab_size} T={seq_len} B={batch_size} L={n_layers} "
          f"({torch.get_num_threads()} threads, deterministic kernels)")
    for flush in (False, True):
        small, large = best[small_lr, flush], best[lr, flush]
        print(f"  denormal flushing {'on ' if flush else 'off'}  lr={small_lr:g}: {small / steps * 1e3:8.1f} ms/step   "
              f"lr={lr:g}: {large / steps * 1e3:8.1f} ms/step   ratio {small / large:.2f}×")
    for eta in (small_lr, lr):
        off, on = final[eta, False], final[eta, True]
        same = all(torch.equal(off[k], on[k]) for k in off)
        # each weight's largest change against its own largest entry (the weights differ in scale by η³)
        relative = max(float((off[k] - on[k]).abs().max() / off[k].abs().max().clamp_min(1e-45)) for k in off)
        print(f"  lr={eta:g}: weights after {steps} steps with flushing on and off "
              + ("identical" if same else f"differ by at most {relative:.1e} of each weight's largest entry"))
