"""Checkpointed LMs of the supported families (common/checkpoints/architectures.py; causal, and BERT's masked
LM): sources, revisions, loading, and the single-token representations the comparisons read
(docs/theory.md §6, §12, §17).

Sources (`CheckpointSource`):
  - a local folder holding one sub-folder per revision (`{folder}/step0/`, `{folder}/checkpoint-10/`, …
    each written by `save_pretrained`, with its tokenizer) — the layout `train_neox_checkpoints.py` writes;
  - a hub name (`EleutherAI/pythia-1.4b-deduped`, …) with revisions named by the family's convention
    (common/checkpoints/revisions.py).  Online, its branches are listed from the hub when a range or a
    pattern needs them.  Offline (HF_HUB_OFFLINE=1, or no connection), it runs from the Hugging Face cache
    (common/hub.py): the cached refs are its revisions, and a revision missing from the cache (or a cached
    revision missing its configuration, weights or tokenizer) is one UserError line naming what is missing.
  - revisions that are repositories or folders of their own (MultiBERTs: `google/multiberts-seed_0-step_20k`):
    a `{revision}` placeholder in the last component of the name, `google/multiberts-seed_0-step_{revision}`,
    stands for the revision (`20k`).  Locally, the revisions are the folders beside it that match the
    template (`{out_dir}/seed1-step_{revision}` → `seed1-step_0`, `seed1-step_512`, …); offline, the
    cached repositories matching it (their `main`); online, the hub's repositories matching it.
Several models at once (`--model_name`): a comma list, or a brace range `EleutherAI/pythia-160m-seed{1..9}`
(`expand_model_names`; `google/multiberts-seed_{0..4}-step_{revision}` is five templates).  Every failure (missing folder, unknown revision, unsupported family, revisions of
different models, a hub name offline and not cached) is a one-line `UserError`, raised before any work.

Weights.  A revision with safetensors files is loaded by transformers from them.  One that ships only pickled
weights (`pytorch_model.bin`, or its shards with `pytorch_model.bin.index.json`: MultiBERTs, old Pythia
branches) is read here with `torch.load(weights_only=True)`, never a full unpickle, and given to the model
as its state dict; a file whose pickle asks for anything but tensors and plain containers (code to run) is
refused in one line (`pickled_state_dict`).

Read-outs, each token alone at position 0 (rotary embeddings are the identity there):
`single_token_representations(model, token_ids)`: H_pre, H_mid = H_pre + the attention branch's output
(no MLP; BERT's post-LN attention block already ends in the residual stream after its norm, which is
H_mid), H_post per layer, from forward hooks placed by the family's adapter.  H_post of the last layer is
the raw residual stream: the last entry of `output_hidden_states` has the final norm applied and is not used.
"""
import json
import pickle
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
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")
SAFETENSORS_FILES = WEIGHT_FILES[:2]
PICKLE_FILE, PICKLE_INDEX = WEIGHT_FILES[2:]
PLACEHOLDER = "{revision}"   # in --model_name: each revision is a repository or folder of its own


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


def pickled_state_dict(files: list, where: str) -> dict:
    """The tensors of pickled weight files, each read with `torch.load(weights_only=True)`: the unpickler
    rebuilds tensors and plain containers only and refuses anything else, so a file that would run code
    (or needs any other class) is one UserError line, never executed."""
    state = {}
    for path in files:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
        except pickle.UnpicklingError as error:
            detail = next((line.strip() for line in str(error).splitlines() if "Unsupported" in line
                           or "global" in line.lower()), str(error).splitlines()[0] if str(error) else "")
            raise UserError(f"refused to load {Path(path).name} of {where}: its pickle needs more than tensors "
                            f"({detail[:160]}), and only weights_only loading is allowed; convert it to "
                            f"safetensors where you trust it") from None
        except Exception as error:   # truncated or corrupt file
            raise UserError(f"could not read {Path(path).name} of {where} ({error.__class__.__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''})") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise UserError(f"{Path(path).name} of {where} is not a state dict (a mapping of names to tensors)")
        state.update(loaded)
    return state


def _pickle_shards(folder: Path) -> list:
    """The pickled weight files a folder's index names, or its pytorch_model.bin."""
    index = folder / PICKLE_INDEX
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [folder / PICKLE_FILE]


class CheckpointSource:
    """A hub model name (online, or offline from the Hugging Face cache) or a local folder with one
    sub-folder per revision; or, with a `{revision}` placeholder in the name's last component, a family of
    repositories or folders, one per revision (module docstring)."""

    def __init__(self, model_name: str):
        self.name = str(model_name)
        self.template = PLACEHOLDER in self.name
        if self.template:
            head, _, last = self.name.rstrip("/").rpartition("/")
            if self.name.count(PLACEHOLDER) != 1 or PLACEHOLDER not in last or re.search(r"[{}]", last.replace(
                    PLACEHOLDER, "")):
                raise UserError(f"--model_name={self.name!r}: the {PLACEHOLDER} placeholder goes once into the last "
                                f"component of the name (e.g. google/multiberts-seed_0-step_{PLACEHOLDER})")
            before, _, after = last.partition(PLACEHOLDER)
            self._pattern = re.compile(re.escape(before) + r"(.+?)" + re.escape(after))
            self._parent = head
        path = Path(self._parent if self.template else self.name).expanduser()
        looks_local = _looks_like_path(self.name) or (self.template and _looks_like_path(self._parent))
        self.local: Optional[Path] = path if looks_local else None
        if self.local is not None and not self.local.is_dir():
            raise UserError(f"checkpoint folder not found: {path if self.template else model_name} "
                            f"({_LOCAL_HINT}, or a hub model name)")
        self._listed = None

    def repository(self, revision: str):
        """(hub repository or local folder, hub branch) holding `revision`: the name and the revision, or for a
        template the name with the revision put in and the repository's `main`."""
        if self.template:
            return self.name.replace(PLACEHOLDER, str(revision)), "main"
        return self.name, str(revision)

    def _templated(self, names) -> dict:
        """{revision: name} of the names (folder or repository names) the template matches."""
        found = {}
        for name in names:
            match = self._pattern.fullmatch(str(name).rstrip("/").rpartition("/")[2])
            if match and str(name).rstrip("/").rpartition("/")[0] in ("", self._parent):
                found[match.group(1)] = name
        return found

    @property
    def offline(self) -> bool:
        from common.hub import hub_offline

        return self.local is None and hub_offline()

    @property
    def where(self) -> str:
        if self.local is not None:
            return self.name if self.template else str(self.local)
        if self.offline:
            from common.hub import hub_cache_dir

            return f"the Hugging Face cache of {self.name!r} ({hub_cache_dir()})"
        return f"the hub repositor{'ies' if self.template else 'y'} {self.name!r}"

    def _folders(self) -> dict:
        """{name: folder} of the revisions at hand: a local folder's sub-folders with a config.json, or
        the cache's snapshots (offline); for a template, the matching folders or cached repositories."""
        if self.template:
            return self._templated_folders()
        if self.local is not None:
            return {p.name: p for p in self.local.iterdir() if p.is_dir() and (p / "config.json").is_file()}
        from common.hub import cached_revisions

        return cached_revisions(self.name)

    def _templated_folders(self) -> dict:
        if self.local is not None:
            matched = self._templated(f"{self._parent}/{p.name}" for p in self.local.iterdir()
                                      if p.is_dir() and (p / "config.json").is_file())
            return {revision: self.local / Path(name).name for revision, name in matched.items()}
        from common.hub import cached_snapshot, hub_cache_dir

        cache = hub_cache_dir()
        repositories = ([p.name[len("models--"):].replace("--", "/") for p in cache.iterdir()
                         if p.is_dir() and p.name.startswith("models--")] if cache.is_dir() else [])
        folders = {}
        for revision, repository in self._templated(repositories).items():
            snapshot = cached_snapshot(repository, "main")
            if snapshot is not None:
                folders[revision] = snapshot
        return folders

    def _hub_repositories(self) -> list:
        """Online: the revisions of a template, from the hub's repositories whose names match it."""
        from huggingface_hub import HfApi

        owner, _, last = self.name.partition("/")
        try:
            names = [m.id for m in HfApi().list_models(author=owner if last else None,
                                                       search=(last or owner).partition(PLACEHOLDER)[0])]
        except Exception as error:   # network failure
            raise UserError(f"could not list the repositories matching {self.name!r} on the hub "
                            f"({error.__class__.__name__}); name the revisions instead of a range or pattern") from None
        return sorted(self._templated(names))

    def available(self) -> list:
        """Every revision name the source has (local sub-folders, cached refs offline, hub branches online)."""
        if self._listed is None:
            if self.local is not None or self.offline:
                self._listed = sorted(self._folders())
            elif self.template:
                self._listed = self._hub_repositories()
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
            if "pythia" in self.name.lower() and not self.template:
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

        repository, branch = self.repository(revision)
        snapshot = cached_snapshot(repository, branch)
        fetch = (f"download it where the hub is reachable (hf download {repository} --revision {branch}), "
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
        repository, branch = self.repository(revision)
        if self.local is not None:
            return (repository if self.template else str(self.local / revision)), {}
        return repository, {"revision": branch, **({"local_files_only": True} if self.offline else {})}

    def _pickled_files(self, revision: str):
        """The revision's pickled weight files when it has no safetensors (downloaded online), else None."""
        where, kwargs = self._location(revision)
        if self.local is not None or self.offline:
            folder = Path(where) if self.local is not None else self._folders().get(revision)
            if folder is None:
                from common.hub import cached_snapshot

                folder = cached_snapshot(*self.repository(revision))
            if folder is None or any((folder / name).is_file() for name in SAFETENSORS_FILES):
                return None
            return _pickle_shards(folder) if any((folder / n).is_file() for n in (PICKLE_FILE, PICKLE_INDEX)) else None
        from huggingface_hub import hf_hub_download, list_repo_files

        files = list_repo_files(where, revision=kwargs["revision"])
        if any(name in files for name in SAFETENSORS_FILES) or not any(n in files for n in (PICKLE_FILE, PICKLE_INDEX)):
            return None
        fetch = lambda name: Path(hf_hub_download(where, name, revision=kwargs["revision"]))
        if PICKLE_INDEX in files:
            shards = sorted(set(json.loads(fetch(PICKLE_INDEX).read_text())["weight_map"].values()))
            return [fetch(name) for name in shards]
        return [fetch(PICKLE_FILE)]

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
        """The revision's LM (causal, or BERT's masked LM: the family's `model_class`) on the CPU, in eval mode
        (the caller hashes it, then moves it).  Pickled weights: module docstring."""
        import transformers
        from transformers.utils import logging as hf_logging

        config = self.load_config(revision)
        auto = getattr(transformers, architecture_for(config).model_class)
        hf_logging.disable_progress_bar()
        verbosity = hf_logging.get_verbosity()
        try:
            pickled = self._load("weight files", lambda where, **kwargs: self._pickled_files(revision), revision)
            if pickled is not None:
                state = pickled_state_dict(pickled, f"{self.name} ({revision})")
                model_class = auto._model_mapping[type(config)]
                hf_logging.set_verbosity_error()   # the load report lists the heads a masked LM does not use
                load = lambda where, **kwargs: model_class.from_pretrained(None, config=config, state_dict=state,
                                                                           dtype=dtype)
            else:
                load = lambda where, **kwargs: auto.from_pretrained(where, dtype=dtype, weights_only=True, **kwargs)
            return self._load("weights", load, revision).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
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
    inputs = architecture.single_token_inputs
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
            base(input_ids=ids, **inputs)
    finally:
        for handle in handles:
            handle.remove()
    # H_mid = H_pre + the attention branch: the residual between attention and MLP of a sequential layer, the
    # parallel-residual layer (GPTNeoX) without its MLP branch; a post-LN branch (BERT) ends in that residual
    mid = [attention_out[l] if architecture.branch_ends_in_residual else
           attention_out[l].add_(embedding if l == 0 else post[l - 1]) for l in range(len(layers))]
    return Representations(embedding=embedding, mid=mid, post=post)
