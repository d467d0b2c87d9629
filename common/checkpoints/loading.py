"""Checkpointed causal LMs of the supported families (common/checkpoints/architectures.py): revisions, loading,
weight hashes, and the single-token representations the comparisons read (docs/theory.md §6, §12).

Sources. A hub name (`EleutherAI/pythia-1.4b-deduped`, `stanford-crfm/alias-gpt2-small-x21`, …) with
revisions named by the family's convention (common/checkpoints/revisions.py), or a local folder holding one
sub-folder per revision (`{folder}/step0/`, `{folder}/checkpoint-10/`, … each written by
`save_pretrained`, with its tokenizer) — the layout `train_neox_checkpoints.py` writes.  Every failure
(missing folder, unknown revision, unsupported family, revisions of different models, a hub name while
offline) is a one-line `UserError`, raised before any work is done.

Read-outs, each token alone at position 0 (rotary embeddings are the identity there):
  - `single_token_representations(model, token_ids)`: H_pre, H_mid = H_pre + attention output (no
    MLP), H_post per layer, from forward hooks placed by the family's adapter.  H_post of the last
    layer is the raw residual stream: the last entry of `output_hidden_states` has the final norm
    applied and is not used.
  - `weights_sha256(model)`: one hash of every tensor of the state dict, so that revisions holding the
    same weights (Pythia's step0 and step1) are recognised.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
from tqdm.auto import tqdm

from common.checkpoints.architectures import architecture_for, shape_of
from common.io import UserError
from common.checkpoints.revisions import check_published_pythia_step, parse_revision, sort_revisions, split_revisions

_LOCAL_HINT = "pass a local folder with one sub-folder per revision (train_neox_checkpoints.py writes one)"


def _looks_like_path(name: str) -> bool:
    """A path the user meant: it exists, starts like a path, or its first component is a local folder
    (`out/neox_chekpoints` is a mistyped folder, not a hub name)."""
    path = Path(name).expanduser()
    return (name.startswith((".", "/", "~")) or path.exists()
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


class CheckpointSource:
    """A hub model name or a local folder with one sub-folder per revision."""

    def __init__(self, model_name: str):
        self.name = str(model_name)
        path = Path(self.name).expanduser()
        self.local: Optional[Path] = path if _looks_like_path(self.name) else None
        if self.local is not None and not self.local.is_dir():
            raise UserError(f"checkpoint folder not found: {model_name} ({_LOCAL_HINT}, or a hub model name)")

    def available(self) -> list:
        """Revisions present in a local folder (sub-folders with a config.json), by step number."""
        found = [p.name for p in self.local.iterdir() if p.is_dir() and (p / "config.json").is_file()]
        unnamed = [name for name in found if parse_revision(name) is None]
        if unnamed:
            sort_revisions(unnamed[:1])   # one line naming the conventions
        return sort_revisions(found)

    def resolve(self, revisions) -> list:
        """Validate revision names (all of them, before any work) and order them by step number.
        `all` means every revision of a local folder."""
        revisions = split_revisions(revisions)
        if not revisions:
            raise UserError("no revision given; pass e.g. --revisions=step0,step512 (or all for a local folder)")
        if self.local is not None:
            available = self.available()
            if revisions == ["all"]:
                if not available:
                    raise UserError(f"{self.local} holds no revision sub-folder (step0/, checkpoint-10/, … "
                                    f"with a config.json)")
                return available
            for revision in sort_revisions(revisions):
                if revision not in available:
                    shown = ", ".join(available[:12]) + (" …" if len(available) > 12 else "")
                    raise UserError(f"revision {revision!r} not found in {self.local} (it has: "
                                    f"{shown or 'no revision sub-folder'}); --revisions=all reads every one")
            return sort_revisions(revisions)
        if revisions == ["all"]:
            raise UserError("--revisions=all needs a local checkpoint folder; name the hub revisions instead")
        ordered = sort_revisions(revisions)
        if "pythia" in self.name.lower():
            for revision in ordered:
                check_published_pythia_step(revision)
        return ordered

    def _location(self, revision: str):
        if self.local is not None:
            return str(self.local / revision), {}
        return self.name, {"revision": revision}

    def _load(self, what: str, loader, revision: str):
        where, kwargs = self._location(revision)
        if self.local is None:
            from common.hub import require_hub

            require_hub(self.name, _LOCAL_HINT)
        try:
            return loader(where, **kwargs)
        except UserError:
            raise
        except Exception as error:  # missing files, unknown revision on the hub, corrupt files
            if self.local is not None:
                raise UserError(f"could not load the {what} of {where} ({error.__class__.__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''})") from None
            raise UserError(f"could not load the {what} of {self.name!r} revision {revision!r} from the hub "
                            f"({error.__class__.__name__}); {_LOCAL_HINT}") from None

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


@torch.no_grad()
def weights_sha256(model) -> str:
    """sha256 over the state dict as loaded: every tensor's name, dtype, shape and bytes, names sorted."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


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
    hooks sit is the family's adapter's business (common/checkpoints/architectures.py); position 0 adds what the
    family adds there (wpe[0] for GPT-2), because the whole embedding module runs."""
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
        handles.append(architecture.attention(layer).register_forward_hook(
            lambda module, args, output, index=index: store(attention_out[index])(_first(output))))
        handles.append(layer.register_forward_hook(
            lambda module, args, output, index=index: store(post[index])(_first(output))))
    try:
        for start in tqdm(range(0, n, batch_size), desc="single-token representations", disable=not progress,
                          leave=False):
            window.update(start=start, stop=min(start + batch_size, n))
            ids = token_ids[start:start + batch_size].to(device).view(-1, 1)
            base(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    # H_mid = H_pre + attention output: the residual between attention and MLP of a sequential layer, the
    # parallel-residual layer (GPTNeoX) without its MLP branch
    mid = [attention_out[l].add_(embedding if l == 0 else post[l - 1]) for l in range(len(layers))]
    return Representations(embedding=embedding, mid=mid, post=post)
