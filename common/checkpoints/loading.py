"""Checkpointed causal LMs of the supported families (common/checkpoints/architectures.py): sources,
revisions, loading, and the single-token representations the comparisons read (docs/theory.md §6, §12).

Sources (`CheckpointSource`):
  - a local folder holding one sub-folder per revision (`{folder}/step0/`, `{folder}/checkpoint-10/`, …
    each written by `save_pretrained`, with its tokenizer) — the layout `train_neox_checkpoints.py` writes;
  - a hub name (`EleutherAI/pythia-1.4b-deduped`, …) with revisions named by the family's convention
    (common/checkpoints/revisions.py).  Online, its branches are listed from the hub when a range or a
    pattern needs them.  Offline (HF_HUB_OFFLINE=1, or no connection), it runs from the Hugging Face cache
    (common/hub.py): the cached refs are its revisions, and a revision missing from the cache (or a cached
    revision missing its configuration, weights or tokenizer) is one UserError line naming what is missing.
Several models at once (`--model_name`): a comma list, or a brace range `EleutherAI/pythia-160m-seed{1..9}`
(`expand_model_names`).  Every failure (missing folder, unknown revision, unsupported family, revisions of
different models, a hub name offline and not cached) is a one-line `UserError`, raised before any work.

Read-outs, each token alone at position 0 (rotary embeddings are the identity there):
`single_token_representations(model, token_ids)`: H_pre, H_mid = H_pre + the attention branch's output
(no MLP), H_post per layer, from forward hooks placed by the family's adapter.  H_post of the last layer is
the raw residual stream: the last entry of `output_hidden_states` has the final norm applied and is not used.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from common.checkpoints.architectures import architecture_for, shape_of
from common.checkpoints.revisions import (check_published_pythia_step, is_pattern, parse_revision, revision_step,
                                         select_revisions, split_revisions)
from common.io import UserError
from common.progress import progress_bar

_LOCAL_HINT = "pass a local folder with one sub-folder per revision (train_neox_checkpoints.py writes one)"
_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def expand_model_names(value) -> list:
    """`a,b` and `org/name-seed{1..3}` (a brace range of whole numbers, low..high) → the list of names."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = []
    for item in (str(i).strip() for i in items if str(i).strip()):
        match = _BRACE_RANGE.search(item)
        if match is None:
            names.append(item)
            continue
        low, high = int(match.group(1)), int(match.group(2))
        if low > high:
            raise UserError(f"--model_name={item!r}: the brace range {match.group(0)} expands to nothing "
                            f"(write it low..high)")
        names += expand_model_names([item[:match.start()] + str(n) + item[match.end():] for n in range(low, high + 1)])
    if not names:
        raise UserError("--model_name is empty: name a model, a comma list, or org/name-seed{1..3}")
    if len(set(names)) != len(names):
        raise UserError(f"--model_name names a model twice: {', '.join(names)}")
    return names


def _looks_like_path(name: str) -> bool:
    """A path the user meant: it exists, starts like a path, or its first component is a local folder
    (`out/neox_chekpoints` is a mistyped folder, not a hub name)."""
    path = Path(name).expanduser()
    return (name.startswith((".", "/", "~")) or path.exists()
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


class CheckpointSource:
    """A hub model name (online, or offline from the Hugging Face cache) or a local folder with one
    sub-folder per revision."""

    def __init__(self, model_name: str):
        self.name = str(model_name)
        path = Path(self.name).expanduser()
        self.local: Optional[Path] = path if _looks_like_path(self.name) else None
        if self.local is not None and not self.local.is_dir():
            raise UserError(f"checkpoint folder not found: {model_name} ({_LOCAL_HINT}, or a hub model name)")
        self._listed = None

    @property
    def offline(self) -> bool:
        from common.hub import hub_offline

        return self.local is None and hub_offline()

    @property
    def where(self) -> str:
        if self.local is not None:
            return str(self.local)
        if self.offline:
            from common.hub import hub_cache_dir

            return f"the Hugging Face cache of {self.name!r} ({hub_cache_dir()})"
        return f"the hub repository {self.name!r}"

    def _folders(self) -> dict:
        """{name: folder} of the revisions at hand: a local folder's sub-folders with a config.json, or
        the cache's snapshots (offline)."""
        if self.local is not None:
            return {p.name: p for p in self.local.iterdir() if p.is_dir() and (p / "config.json").is_file()}
        from common.hub import cached_revisions

        return cached_revisions(self.name)

    def available(self) -> list:
        """Every revision name the source has (local sub-folders, cached refs offline, hub branches online)."""
        if self._listed is None:
            if self.local is not None or self.offline:
                self._listed = sorted(self._folders())
            else:
                from common.hub import hub_revisions

                self._listed = hub_revisions(self.name)
        return self._listed

    def resolve(self, revisions) -> list:
        """Validate the selection (names, `all`, ranges, `re:` patterns; all of it, before any work) and order
        it by step number."""
        items = split_revisions(revisions)
        online_names_only = self.local is None and not self.offline and not any(map(is_pattern, items))
        if online_names_only:   # no listing needed: the hub answers for each name when it is loaded
            ordered = select_revisions(items, None, self.where)
            if "pythia" in self.name.lower():
                for revision in ordered:
                    check_published_pythia_step(revision)
            return ordered
        available = self.available()
        if self.offline:
            if not available:
                from common.hub import hub_cache_dir

                raise UserError(f"{self.name!r} is not a local path, has no revision in the Hugging Face cache "
                                f"({hub_cache_dir()}) and the hub cannot be reached (offline); download it where "
                                f"the hub is reachable, or {_LOCAL_HINT}")
            for item in items:
                if not is_pattern(item):
                    self.check_cached(item, tokenizer=False)
        unnamed = [r for r in available if parse_revision(r) is None]
        if unnamed and len(unnamed) == len(available):
            revision_step(unnamed[0])   # only folders of no known naming: one line naming the conventions
        ordered = select_revisions(items, available, self.where)
        if self.offline:
            for revision in ordered:
                self.check_cached(revision, tokenizer=revision == ordered[0])
        return ordered

    def check_reference(self, revision: str) -> str:
        """An extra revision hashed against the compared ones (`--integrity_reference`): it must exist."""
        revision = str(revision).strip()
        if self.local is not None or self.offline:
            if revision not in self._folders():
                raise UserError(f"--integrity_reference={revision!r} is not a revision of {self.where} (it has: "
                                f"{', '.join(sorted(self._folders())[:12]) or 'none'})")
            if self.offline:
                self.check_cached(revision, tokenizer=False)
        elif revision not in self.available():
            raise UserError(f"--integrity_reference={revision!r} is not a branch of {self.where}")
        return revision

    def check_cached(self, revision: str, tokenizer: bool) -> None:
        """Offline: the revision's configuration, weights (and tokenizer) are in the cache, else one line
        naming what is missing."""
        from common.hub import cached_snapshot

        snapshot = cached_snapshot(self.name, revision)
        fetch = (f"download it where the hub is reachable (hf download {self.name} --revision {revision}), "
                 f"or {_LOCAL_HINT}")
        if snapshot is None:
            raise UserError(f"revision {revision!r} of {self.name!r} is not in the Hugging Face cache and the hub "
                            f"cannot be reached (offline); {fetch}")
        missing = [] if (snapshot / "config.json").is_file() else ["config.json"]
        if not any((snapshot / name).is_file() for name in WEIGHT_FILES):
            missing.append("the weights (" + " or ".join(WEIGHT_FILES[::2]) + ")")
        if tokenizer and not any((snapshot / name).is_file() for name in TOKENIZER_FILES):
            missing.append("the tokenizer (tokenizer.json)")
        if missing:
            raise UserError(f"revision {revision!r} of {self.name!r} is in the Hugging Face cache without "
                            f"{' and '.join(missing)}, and the hub cannot be reached (offline); {fetch}")

    def _location(self, revision: str):
        if self.local is not None:
            return str(self.local / revision), {}
        return self.name, {"revision": revision, **({"local_files_only": True} if self.offline else {})}

    def _load(self, what: str, loader, revision: str):
        where, kwargs = self._location(revision)
        if self.offline:
            self.check_cached(revision, tokenizer=what == "tokenizer")
        try:
            return loader(where, **kwargs)
        except UserError:
            raise
        except Exception as error:  # missing files, unknown revision on the hub, corrupt files
            reason = f"{error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            if self.local is not None:
                raise UserError(f"could not load the {what} of {where} ({reason})") from None
            source = "the Hugging Face cache (offline)" if self.offline else "the hub"
            raise UserError(f"could not load the {what} of {self.name!r} revision {revision!r} from {source} "
                            f"({reason}); {_LOCAL_HINT}") from None

    def load_config(self, revision: str):
        """The revision's transformers config, of a supported family (else one UserError line)."""
        from transformers import AutoConfig

        config = self._load("configuration", AutoConfig.from_pretrained, revision)
        architecture_for(config, f"{self.name} ({revision})")
        return config

    def check_revisions(self, revisions) -> object:
        """Every revision's config agrees with the first one's (family, vocabulary, layers, heads);
        returns the first config."""
        first = self.load_config(revisions[0])
        expected = shape_of(first)
        for revision in revisions[1:]:
            shape = shape_of(self.load_config(revision))
            for key, value in shape.items():
                if value != expected[key]:
                    raise UserError(f"revisions disagree: {revision} has {key}={value} but {revisions[0]} has "
                                    f"{expected[key]}; compare revisions of one model")
        return first

    def load_tokenizer(self, revision: str):
        from transformers import AutoTokenizer

        return self._load("tokenizer", AutoTokenizer.from_pretrained, revision)

    def load_model(self, revision: str, dtype=torch.float32):
        """The revision's causal LM on the CPU, in eval mode (the caller hashes it, then moves it)."""
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        self.load_config(revision)
        hf_logging.disable_progress_bar()
        try:
            load = lambda where, **kwargs: AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
            return self._load("weights", load, revision).eval()
        finally:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# single-token representations
@dataclass
class Representations:
    """Each token of a token set alone at position 0: H_pre, H_mid, H_post per layer ([n, d_model])."""
    embedding: torch.Tensor        # H_pre of layer 0 (residual stream entering the first layer)
    mid: List[torch.Tensor]        # H_pre + attention output, per layer
    post: List[torch.Tensor]       # residual stream leaving the layer (raw, no final LayerNorm)

    def pre(self, layer: int) -> torch.Tensor:
        return self.embedding if layer == 0 else self.post[layer - 1]

    @property
    def n_layers(self) -> int:
        return len(self.post)


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@torch.no_grad()
def single_token_representations(model, token_ids: torch.Tensor, batch_size: int = 1024,
                                 storage_device="cpu", progress: bool = False) -> Representations:
    """Forward every token of `token_ids` alone (sequence length 1) and record, through forward hooks,
    the residual stream entering layer 0, the attention output of each layer and each layer's output.
    Results are stored (float32) on `storage_device`, so GPU memory holds one batch at a time.  Where the
    hooks sit is the family's adapter's business (common/checkpoints/architectures.py: the attention branch
    ends in OLMo-2's post-attention norm); position 0 adds what the family adds there (wpe[0] for GPT-2),
    because the whole embedding module runs."""
    architecture = architecture_for(model.config)
    base = architecture.base(model)
    layers = architecture.layers(model)
    device = next(model.parameters()).device
    n, d = len(token_ids), model.config.hidden_size
    empty = lambda: torch.empty(n, d, dtype=torch.float32, device=storage_device)
    embedding, attention_out, post = empty(), [empty() for _ in layers], [empty() for _ in layers]
    window = {}

    def store(target):
        def write(value) -> None:  # hooks must return None (a value would replace the module's output)
            target[window["start"]:window["stop"]].copy_(value[:, 0].float())
        return write

    def pre_hook(module, args, kwargs):
        store(embedding)(args[0] if args else kwargs["hidden_states"])

    handles = [layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True)]
    for index, layer in enumerate(layers):
        handles.append(architecture.attention_branch(layer).register_forward_hook(
            lambda module, args, output, index=index: store(attention_out[index])(_first(output))))
        handles.append(layer.register_forward_hook(
            lambda module, args, output, index=index: store(post[index])(_first(output))))
    try:
        for start in progress_bar(range(0, n, batch_size), desc="single-token representations", disable=not progress,
                          leave=False):
            window.update(start=start, stop=min(start + batch_size, n))
            ids = token_ids[start:start + batch_size].to(device).view(-1, 1)
            base(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    # H_mid = H_pre + the attention branch: the residual between attention and MLP of a sequential layer, the
    # parallel-residual layer (GPTNeoX) without its MLP branch
    mid = [attention_out[l].add_(embedding if l == 0 else post[l - 1]) for l in range(len(layers))]
    return Representations(embedding=embedding, mid=mid, post=post)
