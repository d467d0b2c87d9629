"""Are the revisions of a checkpoint suite what their names say?  (docs/theory.md §15)

Upstream suites serve wrong content in three ways: a revision identical to another one (Pythia's step0
and step1; pythia-2.8B branches that serve the end of training), a revision sharing *some* tensors with
another one (a shard of the wrong checkpoint), and missing revisions.  A whole-model hash catches only
the first, and only against revisions hashed in the same run; so every tensor of every revision is
hashed as it is loaded, and revisions are compared tensor by tensor, earlier and later ones alike,
against an optional reference revision too (`--integrity_reference=main`: hashed, not compared).

  tensor_sha256(model)       {tensor name: sha256 of its dtype, shape and bytes} over the state dict
  weights_sha256(hashes)     one hash of the whole model: sha256 over the sorted (name, tensor hash) pairs
  integrity_record(...)      per revision: weights_sha256, duplicate_of (the earliest earlier revision with
                             the same weights), identical_to (every other revision with the same weights,
                             earlier or later, the reference included), shares_tensors_with ({revision:
                             [tensor names]} for revisions sharing some but not all tensors)
  report_lines(record)       one log line per suspicious revision
  column_label(revision, r)  `step1 (= step0)`, `step0 (= main)`, `step512 (shares 12 tensors with main)`

Persistent buffers (none in the supported families today) enter the whole-model hash but are not
counted as shared tensors: they are functions of the configuration, equal in every revision.
"""
import hashlib

import torch

from common.checkpoints.revisions import parse_revision


@torch.no_grad()
def tensor_sha256(model) -> dict:
    """{name: sha256 hex} of every state-dict tensor as loaded (dtype, shape and bytes)."""
    hashes = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest = hashlib.sha256(f"{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        hashes[name] = digest.hexdigest()
    return hashes


def buffer_names(model) -> list:
    return sorted(name for name, _ in model.named_buffers() if name in model.state_dict())


def weights_sha256(hashes: dict) -> str:
    """The whole model's hash from its tensors' hashes (names sorted)."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}:{hashes[name]};".encode())
    return digest.hexdigest()


def _order(revision: str):
    parsed = parse_revision(revision)
    return (0, parsed[0], revision) if parsed else (1, 0, revision)   # named by step first, then others


def integrity_record(hashes: dict, compared: list, references=(), buffers=()) -> dict:
    """`hashes`: {revision: {tensor name: sha256}} for the compared revisions and the references (hashed, not
    compared: `--integrity_reference`).  Returns {revision: entry} for every one of them, the references
    marked `"reference": true`; `duplicate_of` points only at an earlier compared revision."""
    references = [r for r in references if r not in compared]
    revisions = sorted(compared, key=_order) + sorted(references, key=_order)
    whole = {r: weights_sha256(hashes[r]) for r in revisions}
    # revisions holding each (name, tensor hash): shared tensors found without comparing every pair
    holders = {}
    for revision in revisions:
        for name, digest in hashes[revision].items():
            if name not in buffers:
                holders.setdefault((name, digest), []).append(revision)
    record = {}
    for index, revision in enumerate(revisions):
        entry = {"weights_sha256": whole[revision]}
        if revision in references:
            entry["reference"] = True
        same = [r for r in revisions if r != revision and whole[r] == whole[revision]]
        earlier = [r for r in revisions[:index] if r in same and r in compared]
        if earlier and revision in compared:
            entry["duplicate_of"] = earlier[0]
        if same:
            entry["identical_to"] = same
        shared = {}
        for name, digest in sorted(hashes[revision].items()):
            for other in holders.get((name, digest), ()):
                if other != revision and other not in same:
                    shared.setdefault(other, []).append(name)
        if shared:
            entry["shares_tensors_with"] = {r: shared[r] for r in sorted(shared, key=_order)}
        record[revision] = entry
    return record


def _most_shared(entry: dict):
    """(revision, count) of the revision sharing the most tensors with this one, or None."""
    shares = entry.get("shares_tensors_with") or {}
    if not shares:
        return None
    other = max(shares, key=lambda r: len(shares[r]))    # ties: the earliest, dicts keep their order
    return other, len(shares[other])


def suspicious(entry: dict) -> bool:
    return bool(entry.get("identical_to") or entry.get("shares_tensors_with"))


def report_lines(record: dict) -> list:
    """One line per suspicious revision, in the record's order."""
    lines = []
    for revision, entry in record.items():
        parts = []
        if entry.get("identical_to"):
            parts.append(f"holds the same weights as {', '.join(entry['identical_to'])} "
                         f"(sha256 {entry['weights_sha256'][:16]}…)")
        for other, names in (entry.get("shares_tensors_with") or {}).items():
            shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
            parts.append(f"shares {len(names)} tensor{'s' * (len(names) != 1)} with {other} ({shown})")
        if parts:
            what = "the integrity reference " if entry.get("reference") else ""
            lines.append(f"integrity: {what}{revision} " + "; ".join(parts))
    return lines


def column_label(revision: str, record: dict) -> str:
    """A heatmap column label: `step1 (= step0)` when the revision repeats another one's weights (the earliest
    earlier one, else the first other one), and `(shares 12 tensors with step143000)` when it shares some."""
    entry = record.get(revision, {})
    label = revision
    original = entry.get("duplicate_of") or (entry.get("identical_to") or [None])[0]
    if original:
        label += f" (= {original})"
    most = _most_shared(entry)
    if most:
        label += f" (shares {most[1]} tensor{'s' * (most[1] != 1)} with {most[0]})"
    return label
