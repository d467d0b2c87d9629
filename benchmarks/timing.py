"""Timing helpers shared by the benchmarks (CUDA-aware: synchronise before reading the clock)."""
import time

import torch


def _sync(device):
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device=None):
    """(result, seconds) of one call."""
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - start


def best_time(fn, repeats=3, warmup=1, device=None) -> float:
    """Best of `repeats` timed calls after `warmup` untimed ones (seconds)."""
    for _ in range(warmup):
        fn()
    return min(timed(fn, device)[1] for _ in range(repeats))


def dense_step_flops(batch: int, seq_len: int, vocab_size: int, n_layers: int) -> int:
    """FLOPs of the dense V×V products one forward+backward of the model cannot avoid: h@W and h@V at
    layers 2..L and h@W_O, each (B·T × V)(V × V), with its two backward products."""
    return 3 * (2 * (n_layers - 1) + 1) * 2 * batch * seq_len * vocab_size ** 2
