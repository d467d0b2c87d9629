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
