"""The one place that chooses the device, sets up processes and fixes the numerics of a run
(docs/theory.md §13).

    resolve_device('auto' | 'cpu' | 'cuda' | 'cuda:1')   a torch.device, or one clear UserError
    setup_processes(device)                              one process, or one of WORLD_SIZE under torchrun
    configure_numerics(deterministic, tf32)              deterministic kernels (default) and TF32
"""
import os
import re
from dataclasses import dataclass

import torch

from common.io import UserError

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' is cuda:LOCAL_RANK when a GPU is visible, else the CPU."""
    device = str(device).strip()
    if not _DEVICE.fullmatch(device):
        raise UserError(f"unknown --device={device!r}; use auto, cpu, cuda or cuda:N")
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device={device} asks for CUDA but no GPU is visible; use --device=cpu")
        index = int(device.partition(":")[2] or local_rank)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device={device}: only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", index)
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device=mps but MPS is not available; use --device=cpu")
    return torch.device(device)


def configure_numerics(deterministic: bool = True, tf32: bool = False, flush_denormal: bool = True) -> None:
    """Deterministic kernels make the same data, settings and seed give the same bytes on the same
    machine and thread count (docs/theory.md §13): on a multi-threaded CPU the default scatter-adds
    sum in a varying order.  On a GPU cuBLAS also needs a fixed workspace, set before its first use.
    `flush_denormal`: the CPU treats floats below the smallest normal number (1.2e-38 in float32) as
    zero.  From zero initialisation at a small learning rate the products of tiny weights (V ∝ η²,
    W and P ∝ η⁴) fall there, and a CPU computes with such subnormal numbers many times slower: 6×
    per step at η = 0.005 (docs/benchmarks.md §5).  Values that small change no logged figure.  The
    switch is the CPU's only: GPUs compute with subnormal numbers at full speed."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic))
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.set_flush_denormal(bool(flush_denormal))   # False where the CPU has no such mode (nothing to do then)


@dataclass
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> None:
        if self.world > 1:
            torch.distributed.all_reduce(tensor)


def setup_processes(device: str = "auto") -> Processes:
    """One process, or one of WORLD_SIZE under torchrun (gloo on CPU, nccl on GPU); with several
    processes a bare `cuda` means each process's own GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    device = resolve_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(int(os.environ.get("RANK", "0")), world, device)
