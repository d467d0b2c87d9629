"""Files and failures: every output is written to a temporary name and renamed into place (so an
interrupted or failed run never leaves a partial file), and user errors end a script with one clear
line and a non-zero exit instead of a stack trace."""
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


class UserError(Exception):
    """Bad input the user can fix (missing path, wrong vocabulary, empty corpus, …).
    Scripts run their body under `exit_on_user_error()`, which prints the message on one line."""


@contextlib.contextmanager
def exit_on_user_error():
    try:
        yield
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        # outputs are written under temporary names and renamed into place: nothing partial is left
        print("interrupted (nothing partial was written)", file=sys.stderr)
        sys.exit(130)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_sibling(path: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file name beside `path`; renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; the result gets a normal file's mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary directory beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes 0700; the result gets a normal folder's mode
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path, data, indent=2) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent) + "\n", encoding="utf-8")


def read_json(path, what="file"):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{what} {path} is not valid UTF-8 JSON ({error.__class__.__name__})") from None


def save_tensors(path, tensors: dict, metadata: dict) -> None:
    """safetensors file plus a JSON sidecar (`<path>.json`) of metadata (docs/theory.md §7)."""
    from safetensors.torch import save_file
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    write_json(path.with_suffix(".json"), metadata)


def load_tensors(path, what="checkpoint"):
    """(tensors, metadata) from a safetensors file and its JSON sidecar — no unpickling."""
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise UserError(f"{what} {path} is not a readable safetensors file ({error})") from None
    sidecar = path.with_suffix(".json")
    return tensors, (read_json(sidecar, f"{what} metadata") if sidecar.exists() else {})
