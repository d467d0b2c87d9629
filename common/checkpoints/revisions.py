"""Revision names of checkpointed causal LMs and their order (docs/theory.md §12), and the record of
which revisions hold the same weights.

Each family publishes its intermediate checkpoints as Hugging Face revisions named by one convention:
    step{N}                      Pythia (GPTNeoX): step0, 1, 2, 4 … 512, then every 1000 to 143000
    checkpoint-{N}               Stanford CRFM GPT-2
    ckpt_{NNN}                   LLM360 Amber (Llama)
    step-{N}                     TinyLlama, SmolLM (Llama)
    step{N}-tokens{M}B           OLMo v1
    stage1-step{N}-tokens{M}B    OLMo-2 (recognised, so that the family itself is refused in one line)
Revisions are ordered by the step number in their name (ties by name).  Nothing here imports torch.
"""
import re
from dataclasses import dataclass

from common.io import UserError

# Pythia's published checkpoint schedule: step0, 1, 2, 4, …, 512, then every 1000 up to 143000
PYTHIA_STEPS = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))
EARLY_REVISIONS = [f"step{s}" for s in PYTHIA_STEPS[1:11]]  # step1 … step512 (per-head default)


@dataclass(frozen=True)
class RevisionNaming:
    template: str    # how the convention reads, e.g. checkpoint-{N}
    pattern: str     # regular expression; its first group is the step number
    families: str    # who publishes revisions named this way


NAMINGS = (
    RevisionNaming("step{N}", r"step(\d+)", "Pythia"),
    RevisionNaming("checkpoint-{N}", r"checkpoint-(\d+)", "Stanford CRFM GPT-2"),
    RevisionNaming("ckpt_{NNN}", r"ckpt_(\d+)", "LLM360 Amber"),
    RevisionNaming("step-{N}", r"step-(\d+)", "TinyLlama, SmolLM"),
    RevisionNaming("step{N}-tokens{M}B", r"step(\d+)-tokens(\d+)B", "OLMo v1"),
    RevisionNaming("stage1-step{N}-tokens{M}B", r"stage1-step(\d+)-tokens(\d+)B", "OLMo-2"),
)
KNOWN_NAMINGS = ", ".join(n.template for n in NAMINGS)


def parse_revision(revision: str):
    """(step, naming) of a revision name, or None when it follows no known convention."""
    for naming in NAMINGS:
        match = re.fullmatch(naming.pattern, str(revision))
        if match:
            return int(match.group(1)), naming
    return None


def revision_step(revision: str) -> int:
    """The step number in a revision name; one UserError line for a name of no known convention."""
    parsed = parse_revision(revision)
    if parsed is None:
        raise UserError(f"unknown revision {revision!r}: revisions are named {KNOWN_NAMINGS} "
                        f"(or `all` for every revision of a local folder)")
    return parsed[0]


def sort_revisions(revisions) -> list:
    """Unique revisions ordered by step number (then by name)."""
    return sorted(set(revisions), key=lambda r: (revision_step(r), str(r)))


def split_revisions(revisions) -> list:
    """A list of revision names from a list or a comma-separated string (`--revisions=step0,step8`)."""
    if isinstance(revisions, str):
        revisions = revisions.split(",")
    return [str(r).strip() for r in revisions if str(r).strip()]


def check_published_pythia_step(revision: str) -> None:
    if revision_step(revision) not in PYTHIA_STEPS or parse_revision(revision)[1] is not NAMINGS[0]:
        raise UserError(f"unknown revision {revision!r}: Pythia checkpoints exist at step0, step1, step2, "
                        f"step4 … step512 and every 1000 steps up to step143000")


def mark_duplicates(record: dict) -> dict:
    """{revision: {"weights_sha256": …}} → the same with "duplicate_of" naming the earliest revision (by
    step) holding the same weights, for every revision that repeats one."""
    first_with = {}
    marked = {}
    for revision in sort_revisions(record):
        digest = record[revision]["weights_sha256"]
        entry = {"weights_sha256": digest}
        if digest in first_with:
            entry["duplicate_of"] = first_with[digest]
        else:
            first_with[digest] = revision
        marked[revision] = entry
    return marked


def column_label(revision: str, record: dict) -> str:
    """A heatmap column label: `step1 (= step0)` when the revision repeats an earlier one's weights."""
    original = record.get(revision, {}).get("duplicate_of")
    return f"{revision} (= {original})" if original else revision
