"""Is the model/data hub reachable?  Asked once before any `from_pretrained` or `load_dataset` of a
hub name, so that an offline machine fails at once with one line instead of ~30 s of retries.

Offline when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE is set, or when a TCP
connection to the hub's host does not open within `timeout` seconds (the answer is remembered)."""
import functools
import os
import socket
from urllib.parse import urlparse

from common.io import UserError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _set(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=None)
def _reachable(host: str, timeout: float) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_offline(timeout: float = 2.0) -> bool:
    if any(_set(v) for v in OFFLINE_VARIABLES):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    return not _reachable(host, timeout)


def require_hub(name: str, local_hint: str) -> None:
    """One UserError line when the hub cannot be reached: `name` is what was asked for,
    `local_hint` says what local path to pass instead."""
    if hub_offline():
        raise UserError(f"{name!r} is not a local path and the Hugging Face hub cannot be reached "
                        f"(offline); {local_hint}")
