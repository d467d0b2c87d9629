"""GPTNeoX (Pythia) checkpoints: revisions, loading, and what the comparisons read out of a model.

Sources. A hub name (`EleutherAI/pythia-1.4b-deduped`) with a `revision` (`step0`, `step1`, `step2`,
`step4` … `step512`, `step1000` … `step143000`), or a local folder holding one sub-folder per
revision (`{folder}/step0/`, `{folder}/step1/`, … each written by `save_pretrained`, with its
tokenizer) — the layout `train_neox_checkpoints.py` writes.  Every failure (missing folder, unknown
revision, failed download) is a one-line `UserError`, raised before any work is done.

Read-outs (docs/theory.md §6), each token alone at position 0 (rotary is the identity there):
  - `folded_query_key(layer)`: per-head W_Q, W_K [heads, d_model, head_size] (and biases) from the
    fused `query_key_value` weight, whose output rows are laid out head by head as
    [head, (q, k, v), head_size]; the attention LayerNorm weight γ is folded in (its bias β goes
    into the biases) and the weights are centred over d_model, so that
        q_h = ((x − mean x)/σ(x)) W_Q^h + b_Q^h   equals the module's own query (same for k).
  - `single_token_representations(model, token_ids)`: H_pre, H_mid = H_pre + attention output (no
    MLP), H_post per layer, from forward hooks.  H_post of the last layer is the raw residual stream:
    the last entry of `output_hidden_states` has the final LayerNorm applied and is not used.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
from tqdm.auto import tqdm

from common.io import UserError

# Pythia's published checkpoint schedule: step0, 1, 2, 4, …, 512, then every 1000 up to 143000
PYTHIA_STEPS = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))
EARLY_REVISIONS = [f"step{s}" for s in PYTHIA_STEPS[1:11]]  # step1 … step512 (per-head default)


def revision_step(revision: str) -> int:
    """The step number of a revision name `step{N}`."""
    match = re.fullmatch(r"step(\d+)", str(revision))
    if not match:
        raise UserError(f"unknown revision {revision!r}: revisions are named step0, step1, step2, step4 … "
                        f"step512, step1000 … step143000")
    return int(match.group(1))


def sort_revisions(revisions) -> list:
    """Unique revisions ordered by step number."""
    return sorted(set(revisions), key=revision_step)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


class CheckpointSource:
    """A hub model name or a local folder with one sub-folder per revision."""

    def __init__(self, model_name: str):
        self.name = model_name
        path = Path(model_name).expanduser()
        self.local: Optional[Path] = path if _looks_like_path(model_name) else None
        if self.local is not None and not self.local.is_dir():
            raise UserError(f"checkpoint folder not found: {model_name} (pass a folder with one sub-folder "
                            f"per revision, e.g. written by train_neox_checkpoints.py, or a hub model name)")

    def available(self) -> list:
        """Revisions present in a local folder, by step number."""
        found = [p.name for p in self.local.iterdir()
                 if p.is_dir() and re.fullmatch(r"step\d+", p.name) and (p / "config.json").is_file()]
        return sort_revisions(found)

    def resolve(self, revisions) -> list:
        """Validate revision names (all of them, before any work) and order them by step number.
        `all` means every revision of a local folder."""
        revisions = [revisions] if isinstance(revisions, str) else list(revisions)
        if not revisions:
            raise UserError("no revision given; pass e.g. --revisions=step0,step512")
        if self.local is not None:
            available = self.available()
            if revisions == ["all"]:
                if not available:
                    raise UserError(f"{self.local} holds no revision sub-folder (step0/, step1/, … with a config.json)")
                return available
            for revision in revisions:
                revision_step(revision)
                if revision not in available:
                    shown = ", ".join(available[:12]) + (" …" if len(available) > 12 else "")
                    raise UserError(f"revision {revision!r} not found in {self.local} "
                                    f"(it has: {shown or 'no revision sub-folder'})")
            return sort_revisions(revisions)
        if revisions == ["all"]:
            raise UserError("--revisions=all needs a local checkpoint folder; name the hub revisions instead")
        for revision in revisions:
            step = revision_step(revision)
            if "pythia" in self.name.lower() and step not in PYTHIA_STEPS:
                raise UserError(f"unknown revision {revision!r}: Pythia checkpoints exist at step0, step1, step2, "
                                f"step4 … step512 and every 1000 steps up to step143000")
        return sort_revisions(revisions)

    def _location(self, revision: str):
        if self.local is not None:
            return str(self.local / revision), {}
        return self.name, {"revision": revision}

    def _load(self, what: str, loader, revision: str):
        where, kwargs = self._location(revision)
        try:
            return loader(where, **kwargs)
        except UserError:
            raise
        except Exception as error:  # offline, missing files, unknown revision on the hub, corrupt files
            if self.local is not None:
                raise UserError(f"could not load the {what} of {where} ({error.__class__.__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''})") from None
            raise UserError(f"could not load the {what} of {self.name!r} revision {revision!r} from the hub "
                            f"({error.__class__.__name__}); pass a local folder with one sub-folder per "
                            f"revision (train_neox_checkpoints.py writes one)") from None

    def load_config(self, revision: str):
        from transformers import AutoConfig

        config = self._load("configuration", AutoConfig.from_pretrained, revision)
        if config.model_type != "gpt_neox":
            raise UserError(f"{self.name} ({revision}) is a {config.model_type!r} model; this pipeline reads "
                            f"GPTNeoX (Pythia) checkpoints")
        return config

    def load_tokenizer(self, revision: str):
        from transformers import AutoTokenizer

        return self._load("tokenizer", AutoTokenizer.from_pretrained, revision)

    def load_model(self, revision: str, device="cpu", dtype=torch.float32):
        from transformers import GPTNeoXForCausalLM
        from transformers.utils import logging as hf_logging

        self.load_config(revision)
        hf_logging.disable_progress_bar()
        load = lambda where, **kwargs: GPTNeoXForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
        model = self._load("weights", load, revision)
        hf_logging.enable_progress_bar()
        return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# weights
@dataclass
class QueryKeyWeights:
    """Folded, d_model-centred per-head query/key maps of one layer: q_h = x̂ W_Q[h] + b_Q[h]."""
    W_Q: torch.Tensor  # [heads, d_model, head_size]
    W_K: torch.Tensor  # [heads, d_model, head_size]
    b_Q: torch.Tensor  # [heads, head_size]
    b_K: torch.Tensor  # [heads, head_size]

    def head_matrix(self, head: int) -> torch.Tensor:
        """W_Q^h W_K^hᵀ (d_model × d_model)."""
        return self.W_Q[head] @ self.W_K[head].T

    def mean_matrix(self) -> torch.Tensor:
        """M_l = mean over heads of W_Q^h W_K^hᵀ (d_model × d_model)."""
        return torch.einsum("hdk,hek->de", self.W_Q, self.W_K) / self.W_Q.shape[0]


def base_model(model):
    """The GPTNeoXModel inside a GPTNeoXForCausalLM (or the model itself)."""
    return getattr(model, "gpt_neox", model)


@torch.no_grad()
def folded_query_key(layer, dtype=torch.float64) -> QueryKeyWeights:
    """Per-head W_Q, W_K of a GPTNeoXLayer with the attention LayerNorm folded in, centred over d_model."""
    attention = layer.attention
    weight = attention.query_key_value.weight.to(dtype)  # [3·d_model, d_model]
    d_model = weight.shape[1]
    head_size = attention.head_size
    heads = d_model // head_size
    # output rows are grouped head by head, each head holding its q, k, v blocks of head_size rows
    per_head = weight.view(heads, 3, head_size, d_model)
    bias = attention.query_key_value.bias
    bias = (torch.zeros(heads, 3, head_size, dtype=dtype, device=weight.device) if bias is None
            else bias.to(dtype).view(heads, 3, head_size))
    gamma = layer.input_layernorm.weight.to(dtype)
    beta = layer.input_layernorm.bias
    beta = torch.zeros_like(gamma) if beta is None else beta.to(dtype)
    folded = []
    for part in (0, 1):  # query, key
        W = per_head[:, part].transpose(1, 2)              # [heads, d_model, head_size]: q = x W + b
        b = bias[:, part] + torch.einsum("d,hdk->hk", beta, W)
        W = gamma[None, :, None] * W
        W = W - W.mean(dim=1, keepdim=True)                # centring over d_model absorbs x − mean x
        folded += [W, b]
    W_Q, b_Q, W_K, b_K = folded
    return QueryKeyWeights(W_Q=W_Q, W_K=W_K, b_Q=b_Q, b_K=b_K)


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
    Results are stored (float32) on `storage_device`, so GPU memory holds one batch at a time."""
    base = base_model(model)
    layers = base.layers
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
        handles.append(layer.attention.register_forward_hook(
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
    # H_mid = H_pre + attention output (the parallel-residual layer without its MLP branch)
    mid = [attention_out[l].add_(embedding if l == 0 else post[l - 1]) for l in range(len(layers))]
    return Representations(embedding=embedding, mid=mid, post=post)
