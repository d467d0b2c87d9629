"""The model/data hub: is it reachable, and what of it is in the local Hugging Face cache?

Reachability is asked once before any `from_pretrained` or `load_dataset` of a hub name, so that an
offline machine fails at once with one line instead of a long series of retries.  Offline when HF_HUB_OFFLINE /
HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE is set, or when a TCP connection to the hub's host does not
open within `timeout` seconds (the answer is remembered).

The cache.  On a cluster, revisions are downloaded on a login node and the work runs offline on compute
nodes (HF_HUB_OFFLINE=1).  huggingface_hub writes a repository into its cache as
    {HF_HUB_CACHE}/models--{org}--{name}/blobs/{etag}                  file contents (LFS files: their sha256)
                                        /snapshots/{commit}/{file}     symlinks into blobs/
                                        /refs/{branch}                 the commit a branch pointed to
so the revisions a cache holds are its refs, and `from_pretrained(name, revision=branch)` resolves them
offline.  `cached_revisions` lists them; `cached_snapshot` gives a revision's snapshot folder.
Online, `hub_revisions` lists a repository's branches.
"""
import functools
import os
import socket
from pathlib import Path
from typing import Optional
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


# ---------------------------------------------------------------------------------------------
# the local cache
def hub_cache_dir() -> Path:
    """The cache huggingface_hub reads (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repository_cache(repo_id: str, repo_type: str = "model") -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return hub_cache_dir() / repo_folder_name(repo_id=repo_id, repo_type=repo_type)


def cached_revisions(repo_id: str, repo_type: str = "model") -> dict:
    """{branch: snapshot folder} for every ref of the repository in the cache whose snapshot exists
    (pull-request refs left out); {} when the repository is not cached."""
    root = repository_cache(repo_id, repo_type)
    refs = root / "refs"
    if not refs.is_dir():
        return {}
    found = {}
    for ref in sorted(p for p in refs.iterdir() if p.is_file()):
        snapshot = root / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            found[ref.name] = snapshot
    return found


def cached_snapshot(repo_id: str, revision: str, repo_type: str = "model") -> Optional[Path]:
    return cached_revisions(repo_id, repo_type).get(revision)


def hub_revisions(repo_id: str) -> list:
    """The branches of a hub repository (online); one UserError line when they cannot be listed."""
    from huggingface_hub import HfApi

    try:
        return [branch.name for branch in HfApi().list_repo_refs(repo_id).branches]
    except Exception as error:   # unknown or gated repository, network failure
        raise UserError(f"could not list the revisions of {repo_id!r} on the hub ({error.__class__.__name__}); "
                        f"check the name, or name the revisions instead of a range or pattern") from None
