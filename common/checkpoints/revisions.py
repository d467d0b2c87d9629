"""Revision names of checkpointed causal LMs, their order, and how a user selects them (docs/theory.md §12, §15).

Each family publishes its intermediate checkpoints as Hugging Face revisions named by one convention:
    step{N}                      Pythia (GPTNeoX): step0, 1, 2, 4 … 512, then every 1000 to 143000
    checkpoint-{N}               Stanford CRFM GPT-2
    ckpt_{NNN}                   LLM360 Amber (Llama)
    step-{N}                     TinyLlama, SmolLM (Llama)
    step{N}-tokens{M}B           OLMo v1
    stage1-step{N}-tokens{M}B    OLMo-2
    {N}k                         MultiBERTs: each revision is a repository google/multiberts-seed_{S}-step_{N}k,
                                 N thousand steps (the step is N·1000)
    {N}                          a step number: the repository-style folders {out_dir}/seed{S}-step_{N} of
                                 train_neox_checkpoints.py --architecture=bert
The last two name revisions that are whole repositories or folders (a `{revision}` placeholder in
--model_name, common/checkpoints/loading.py), not branches.
Revisions are ordered by the step number in their name (ties by name).

Selecting revisions (`--revisions`), resolved against the names a source has (a local folder's
sub-folders, the Hugging Face cache's refs offline, the hub's branches online):
    step0,step512                names, each of which must exist
    step0..step512               a range: every available name of the endpoints' convention whose step lies
                                 between the endpoints' steps (inclusive)
    re:^step\\d+$                a regular expression (Python `re.search`) over the available names; it
                                 comes last in a list, since it may itself contain commas
    all                          every available name of a known convention
Items combine: `step0..step512,step1000,re:^step\\d+000$`.  Nothing here imports torch.
"""
import re
from dataclasses import dataclass
from typing import Optional

from common.io import UserError

# Pythia's published checkpoint schedule: step0, 1, 2, 4, …, 512, then every 1000 up to 143000
PYTHIA_STEPS = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))
REGEX_PREFIX = "re:"
RANGE_SEPARATOR = ".."


@dataclass(frozen=True)
class RevisionNaming:
    template: str    # how the convention reads, e.g. checkpoint-{N}
    pattern: str     # regular expression; its first group is the step number (in units of `scale`)
    families: str    # who publishes revisions named this way
    scale: int = 1   # steps per unit of the number in the name (MultiBERTs' 20k: 1000)


NAMINGS = (
    RevisionNaming("step{N}", r"step(\d+)", "Pythia"),
    RevisionNaming("checkpoint-{N}", r"checkpoint-(\d+)", "Stanford CRFM GPT-2"),
    RevisionNaming("ckpt_{NNN}", r"ckpt_(\d+)", "LLM360 Amber"),
    RevisionNaming("step-{N}", r"step-(\d+)", "TinyLlama, SmolLM"),
    RevisionNaming("step{N}-tokens{M}B", r"step(\d+)-tokens(\d+)B", "OLMo v1"),
    RevisionNaming("stage1-step{N}-tokens{M}B", r"stage1-step(\d+)-tokens(\d+)B", "OLMo-2"),
    RevisionNaming("{N}k", r"(\d+)k", "MultiBERTs (repositories -step_{N}k)", scale=1000),
    RevisionNaming("{N}", r"(\d+)", "repository-style folders -step_{N}"),
)
KNOWN_NAMINGS = ", ".join(n.template for n in NAMINGS)


def parse_revision(revision: str):
    """(step, naming) of a revision name, or None when it follows no known convention."""
    for naming in NAMINGS:
        match = re.fullmatch(naming.pattern, str(revision))
        if match:
            return int(match.group(1)) * naming.scale, naming
    return None


def revision_step(revision: str) -> int:
    """The step number in a revision name; one UserError line for a name of no known convention."""
    parsed = parse_revision(revision)
    if parsed is None:
        raise UserError(f"unknown revision {revision!r}: revisions are named {KNOWN_NAMINGS} "
                        f"(or `all`, a range `step0..step512`, `re:<expression>`)")
    return parsed[0]


def sort_revisions(revisions) -> list:
    """Unique revisions ordered by step number (then by name)."""
    return sorted(set(revisions), key=lambda r: (revision_step(r), str(r)))


def split_revisions(revisions) -> list:
    """The items of `--revisions`: a list as it is, or a comma-separated string in which a `re:` item
    takes the rest of the string (a regular expression may contain commas)."""
    if not isinstance(revisions, str):
        return [str(r).strip() for r in revisions if str(r).strip()]
    head, regex, tail = revisions.partition(REGEX_PREFIX)
    items = [r.strip() for r in head.split(",") if r.strip()]
    return items + ([REGEX_PREFIX + tail] if regex else [])


def is_pattern(item: str) -> bool:
    """`all`, a range or a regular expression: an item that needs the list of available revisions."""
    return item == "all" or item.startswith(REGEX_PREFIX) or RANGE_SEPARATOR in item


def _in_range(item: str, available: list) -> list:
    low, _, high = item.partition(RANGE_SEPARATOR)
    (low_step, naming), (high_step, high_naming) = (parse_revision(low.strip()) or (None, None),
                                                     parse_revision(high.strip()) or (None, None))
    if naming is None or high_naming is None:
        raise UserError(f"revision range {item!r}: both ends must be revision names ({KNOWN_NAMINGS})")
    if naming is not high_naming:
        raise UserError(f"revision range {item!r}: both ends must follow one convention")
    if low_step > high_step:
        raise UserError(f"revision range {item!r} runs backwards; write it low..high")
    return [r for r in available
            if parse_revision(r) and parse_revision(r)[1] is naming and low_step <= parse_revision(r)[0] <= high_step]


def _matching(item: str, available: list) -> list:
    expression = item[len(REGEX_PREFIX):]
    try:
        compiled = re.compile(expression)
    except re.error as error:
        raise UserError(f"--revisions={item!r} is not a valid regular expression ({error})") from None
    return [r for r in available if compiled.search(r)]


def select_revisions(requested, available: Optional[list], where: str) -> list:
    """The revisions `requested` selects among `available` (None: the list cannot be had, so only plain
    names are accepted, unchecked), ordered by step.  Every failure is one UserError line."""
    items = split_revisions(requested)
    if not items:
        raise UserError("no revision given; pass e.g. --revisions=step0,step512, a range step0..step512, "
                        "re:<expression> or all")
    patterns = [item for item in items if is_pattern(item)]
    if available is None:
        if patterns:
            raise UserError(f"--revisions={patterns[0]!r} needs the list of revisions of {where}, which cannot "
                            f"be had here; name the revisions instead")
        return sort_revisions(items)
    available = [r for r in available if parse_revision(r) is not None]
    shown = lambda: ", ".join(sort_revisions(available)[:12]) + (" …" if len(available) > 12 else "")
    chosen = set()
    for item in items:
        if item == "all":
            found = available
        elif item.startswith(REGEX_PREFIX):
            found = _matching(item, available)
        elif RANGE_SEPARATOR in item:
            found = _in_range(item, available)
        else:
            revision_step(item)   # a name of no known convention is refused first
            if item not in available:
                raise UserError(f"revision {item!r} not found in {where} (it has: {shown() or 'no revision'}); "
                                f"--revisions=all reads every one")
            found = [item]
        if not found:
            raise UserError(f"--revisions: '{item}' matches no revision of {where} (it has: "
                            f"{shown() or 'no revision'})")
        chosen.update(found)
    return sort_revisions(chosen)


def check_published_pythia_step(revision: str) -> None:
    if revision_step(revision) not in PYTHIA_STEPS or parse_revision(revision)[1] is not NAMINGS[0]:
        raise UserError(f"unknown revision {revision!r}: Pythia checkpoints exist at step0, step1, step2, "
                        f"step4 … step512 and every 1000 steps up to step143000")
