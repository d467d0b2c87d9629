"""The one trainer of the Tiny Stories pipeline (docs/theory.md §1, §3, §5, §7): plain SGD on the zero-initialised
attention-only transformer, tracking how each weight lines up with its leading-term matrix.

    data      the folder a tokenizer script wrote (common/corpus/tokenize.py); sequences of T+1 tokens
    order     epoch e visits the sequences in the order randperm(N, seed + e); optimiser step k of the
              epoch takes the global batch perm[k·G:(k+1)·G], G = batch_size × grad_accum × world,
              micro-step m on rank r the slice [m·b·W + r·b, … + b).  The position in the data is
              therefore a function of the step count alone (no generator state to save), and one
              process with batch b·W sees exactly the sequences that W processes with batch b see.
    stats     docs/theory.md §2 statistics of all training sequences (or the first `stats_sequences` of epoch
              0's order, the release's choice), in float64, sharded across processes and all-reduced
    logs      at every log point one entry appended to `training_logs.json` (rewritten atomically):
              epoch, step, loss (mean over the steps since the previous entry), lr, and per weight the
              cosine with its matrix and the relative error to the §3 prediction η-polynomial × matrix
    ckpts     `checkpoints/step_XXXXXXXX.safetensors` + JSON sidecar every `save_every` epochs and at
              the end; `resume` continues from the newest one, refusing one of another configuration
    DDP       under torchrun: DistributedDataParallel, gloo on CPU and nccl on GPU; gradients are
              averaged over ranks, so equal global batches give equal SGD steps
    outputs   the trainer trains: logs, checkpoints, resume.  Whatever else a run produces (the
              association report, the explorer page, topic measures) hooks in as a `RunCallback`
              that the script passes to `train` — the scripts decide what a run writes.
    clock     the theory's natural clock is τ = ηs: `tau > 0` trains until ηs reaches it instead of
              for `epochs`; before training the trainer reports the sequences, the steps, the time of
              the corpus statistics and a warning when τ ends far before the early regime could end
              (TAU_WARNING_FRACTION), and after the first step the measured time of a step and of a log
              point and the estimated time of the run (through `log`)
    Ctrl-C    stops within about a second, abandoning a step whose update has not begun (InterruptFlag);
              the checkpoint it saves continues exactly, with the command printed to continue it
    masked    `objective="masked"` (docs/theory.md §16): the first T tokens of each sequence, x = y; MASK
              appended to the vocabulary as the last id (the name the data folder records); step k of
              epoch e corrupts its whole global batch, in global order, with a generator seeded by
              mask_seed(seed, e, k) (BLAKE2b of "mask:{seed}:{e}:{k}"), and each micro-batch takes its
              rows, so every epoch redraws and a resumed run redraws exactly; the loss is the mean CE
              over the selected positions of the global batch (masked_step).  Statistics: §16's (their
              expectation over the corruption), sharded and all-reduced as the causal ones
    variants  `attention` (causal or all positions), `residual`, `output` (trained W_O or identity),
              `optimizer` (sgd, or adam with its moments saved beside each checkpoint: optimizer_path),
              `uniform_attention_steps` (W and P held at zero — their gradients dropped — for the first
              steps).  Leading-term cosines are logged where a theory exists (`Trainer.theory`); every
              combination trains
"""
import contextlib
import hashlib
import math
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from common.theory.alignment import path_entry, theory_entry
from common.config import Settings
from common.device import Processes, configure_numerics, resolve_device, setup_processes
from common.io import UserError, load_tensors, read_json, save_tensors, write_json
from common.theory.masking import MaskingScheme, corrupt
from common.theory.model import OUTPUTS, AttentionOnlyTransformer
from common.theory.path_exact import CHECKPOINT_PREFIX, PathExactTracker, split_checkpoint
from common.theory.statistics import compute_statistics
from common.theory.weight_kinds import parse_log_key

LOG_FILE = "training_logs.json"
CHECKPOINT_DIR = "checkpoints"
OPTIMIZER_FILE = "optimizer_"   # checkpoints/optimizer_XXXXXXXX.safetensors: a non-SGD optimiser's state (optimizer_path)
# settings that must agree between a checkpoint and the run resuming from it
TRAJECTORY_KEYS = ("vocab_size", "seq_len", "n_layers", "init_std", "lr", "global_batch", "seed",
                   "steps_per_epoch", "stats_sequences", "data_fingerprint", "vocabulary_sha256",
                   "objective", "mask_prob", "mask_split", "attention", "residual", "output", "optimizer",
                   "uniform_attention_steps")


class TrainConfig(Settings, script="tiny_self_attn_natural.py"):
    """The trainer's settings: every setting of tiny_self_attn_natural.py's hyperparameter block, whose
    defaults, types and comments they are (common/config.py `Settings`: no second copy here)."""


class RunCallback:
    """What a run writes besides its log and checkpoints.  The trainer calls, on every process:
        on_log(trainer, entry)   after each log point, with the entry just appended to the log
        on_end(trainer)          once the run has reached its last step (not when interrupted);
                                 returns {name: path} of what it wrote, or None
    A callback reads the trainer's public state: `cfg`, `model`, `stats`, `tokens`, `vocabulary`,
    `step`, `logs`, `out_dir`, `proc` (write files on `proc.main` only).
    `any_model`: True once a callback handles every objective and model variant (docs/theory.md §16); the
    trainer leaves the others out of a run that is not the causal model of §1, and says so."""
    any_model = False

    def on_log(self, trainer, entry: dict) -> None:
        pass

    def on_end(self, trainer):
        return None


# -- schedule ----------------------------------------------------------------------------------
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))


def event_steps(every_epochs: float, steps_per_epoch: int, total: int) -> set:
    """Optimiser steps at which a periodic event (log, checkpoint) happens, always including `total`."""
    steps = {total}
    if every_epochs > 0:
        interval = every_epochs * steps_per_epoch
        steps |= {max(1, math.ceil(j * interval - 1e-9)) for j in range(1, int(total / interval + 1e-9) + 1)}
    return {s for s in steps if 1 <= s <= total}


def micro_batch_indices(order: torch.Tensor, step_in_epoch: int, micro: int, rank: int,
                        batch_size: int, grad_accum: int, world: int) -> torch.Tensor:
    start = step_in_epoch * batch_size * grad_accum * world + micro * batch_size * world + rank * batch_size
    return order[start:start + batch_size]


def _optimiser_step(optimizer, micro_batches, micro_loss, no_sync=None, frozen=()) -> float:
    """The step both objectives share: gradients of every micro-batch summed (DDP's `no_sync` on every
    micro-batch but the last), `frozen` parameters' gradients dropped (so no optimiser touches them), one
    update.  `micro_loss(batch)` → (the tensor to backpropagate, its part of the reported loss)."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with (no_sync() if no_sync is not None and not last else contextlib.nullcontext()):
            backward, reported = micro_loss(batch)
            backward.backward()
        total += reported.item()
    for parameter in frozen:
        parameter.grad = None
    optimizer.step()
    return total


def sgd_step(model, optimizer, micro_batches, no_sync=None, frozen=()) -> float:
    """One optimiser step over (x, y) micro-batches (gradients summed with weight 1/len); returns
    the mean loss. `no_sync`: DDP's context manager, used on every micro-batch but the last.
    `frozen`: parameters this step leaves alone (their gradient dropped, so no optimiser touches them)."""
    def micro_loss(batch):
        x, y = batch
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten()) / len(micro_batches)
        return loss, loss
    return _optimiser_step(optimizer, micro_batches, micro_loss, no_sync, frozen)


def masked_step(model, optimizer, micro_batches, n_selected: int, world: int = 1, no_sync=None,
                frozen=()) -> float:
    """One optimiser step of the masked objective over (x̃, y, selected) micro-batches: the loss is the
    mean cross-entropy over the `n_selected` selected positions of the whole global batch (every
    micro-batch of every process), so each micro-batch contributes Σ_selected CE / n_selected — not a
    mean of per-micro-batch means, which would weigh a position by how many others share its
    micro-batch.  Under DDP (gradients averaged over `world` processes) each process scales its part
    by `world`.  A global batch with no selected position has loss 0 and zero gradients (no NaN).
    Returns this process's part of the loss (the parts of all processes sum to the step's loss)."""
    scale = 1.0 / max(n_selected, 1)

    def micro_loss(batch):
        x, y, selected = batch
        # every position's CE, the unselected ones multiplied by 0: no data-dependent shapes
        per_position = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none")
        loss = (per_position * selected.flatten()).sum() * scale
        return (loss * world if world > 1 else loss), loss
    return _optimiser_step(optimizer, micro_batches, micro_loss, no_sync, frozen)


def mask_seed(seed: int, epoch: int, step_in_epoch: int) -> int:
    """The seed of the corruption drawn at optimiser step `step_in_epoch` of epoch `epoch`: the first 8 bytes
    of BLAKE2b("mask:{seed}:{epoch}:{step_in_epoch}") as a little-endian integer, top bit cleared (63 bits).
    A function of the step alone (no generator state to save), fresh every epoch (dynamic masking), and
    unrelated to the seeds of the epoch orders (seed + epoch)."""
    digest = hashlib.blake2b(f"mask:{seed}:{epoch}:{step_in_epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def global_batch_corruption(tokens: torch.Tensor, order: torch.Tensor, step_in_epoch: int, global_batch: int,
                            scheme, seed: int, epoch: int):
    """(clean x, x̃, selected) [G, T] of one optimiser step's global batch, in global order (the rows
    order[k·G:(k+1)·G] of `tokens`, first T tokens each: x = y): `corrupt` over the whole global batch with
    a generator seeded by mask_seed(seed, epoch, k).  Every process draws the same corruption and takes
    its micro-batches' rows, so batch 2b equals 2 accumulated micro-batches of b, or 2 processes of b."""
    seq_len = tokens.shape[1] - 1
    rows = order[step_in_epoch * global_batch:(step_in_epoch + 1) * global_batch]
    clean = tokens[rows, :seq_len].long()
    x_tilde, selected = corrupt(clean, scheme, torch.Generator().manual_seed(mask_seed(seed, epoch, step_in_epoch)))
    return clean, x_tilde, selected


# -- data and checkpoints ----------------------------------------------------------------------
def load_training_data(cfg: TrainConfig):
    """(tokens int32 [N, T+1], vocabulary, vocabulary SHA-256, data fingerprint)."""
    from common.corpus.tokenize import load_stories, story_sequences, vocabulary_fingerprint
    stories, vocabulary = load_stories(cfg.data_dir)
    tokens = story_sequences(stories, cfg.seq_len, len(vocabulary), cfg.max_sequences, windows=cfg.windows)
    fingerprint = hashlib.blake2b(tokens.numpy().tobytes(), digest_size=16).hexdigest()
    return tokens, vocabulary, vocabulary_fingerprint(vocabulary), fingerprint


def checkpoint_paths(out_dir) -> list:
    return sorted((Path(out_dir) / CHECKPOINT_DIR).glob("step_*.safetensors"))


def check_same_run(meta: dict, run: dict, path) -> None:
    for key in TRAJECTORY_KEYS:
        there = meta.get(key, TRAJECTORY_DEFAULTS.get(key))   # a setting older checkpoints do not record
        if there != run[key]:
            raise UserError(f"checkpoint {path} comes from another configuration ({key} "
                            f"{there!r} there, {run[key]!r} now); resume with the same "
                            f"data and settings, or choose a new --out_dir")


# -- the objective, the model and the optimiser (docs/theory.md §16) --------------------------------
OBJECTIVES = ("causal", "masked")       # next-token prediction (the paper) or masked language modelling
ATTENTIONS = ("auto", "causal", "all")  # OUTPUTS (trained, identity) are the model's
OPTIMIZERS = ("sgd", "adam")
# trajectory settings added after the first runs: a checkpoint that lacks one was trained with this value
_MASKING_DEFAULTS = {f.name: f.default for f in fields(MaskingScheme)}
TRAJECTORY_DEFAULTS = {"objective": "causal", "mask_prob": _MASKING_DEFAULTS["mask_prob"],
                       "mask_split": list(_MASKING_DEFAULTS["split"]), "attention": "causal", "residual": True,
                       "output": "trained", "optimizer": "sgd", "uniform_attention_steps": 0}


def masking_scheme(cfg: TrainConfig, n_words: int) -> MaskingScheme:
    """The corruption of a masked run over `n_words` words (MASK = the id n_words), or one UserError line."""
    split = cfg.mask_split
    if not isinstance(split, (list, tuple)) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) for p in split):
        raise UserError(f"--mask_split must be three probabilities (MASK, own token, random word); got {split!r}")
    try:
        return MaskingScheme(n_words, n_words, float(cfg.mask_prob), tuple(float(p) for p in split)).validate()
    except ValueError as error:
        raise UserError(f"--{error}") from None


def check_settings(cfg: TrainConfig) -> None:
    """One UserError line for a setting of the objective, model or optimiser that cannot be, or a
    combination that cannot train; before any data is read."""
    for name, allowed in (("objective", OBJECTIVES), ("attention", ATTENTIONS), ("output", OUTPUTS),
                          ("optimizer", OPTIMIZERS)):
        if getattr(cfg, name) not in allowed:
            raise UserError(f"--{name} must be one of {', '.join(allowed)} (got {getattr(cfg, name)!r})")
    if cfg.uniform_attention_steps < 0:
        raise UserError(f"--uniform_attention_steps must be at least 0 (got {cfg.uniform_attention_steps})")
    if cfg.objective == "masked":
        masking_scheme(cfg, 1)
    elif cfg.mask_prob != _MASKING_DEFAULTS["mask_prob"] or list(cfg.mask_split) != list(_MASKING_DEFAULTS["split"]):
        raise UserError(f"--mask_prob and --mask_split apply to --objective=masked only (got mask_prob "
                        f"{cfg.mask_prob}, mask_split {list(cfg.mask_split)} with --objective={cfg.objective})")
    if not cfg.residual and cfg.output == "trained" and cfg.init_std == 0:
        raise UserError("--residual=False with --output=trained never trains from zero (every hidden state and "
                        "gradient stays 0); use --output=identity (Li, Li & Risteski's model) or --init_std > 0")
    if not cfg.residual and cfg.n_layers > 1 and cfg.init_std == 0:
        # without the residual a zero layer outputs 0, so the next layer reads 0 and every V's gradient (which
        # needs the layer's input and the V above it) is 0: zero is a stationary point (docs/theory.md §16)
        raise UserError(f"--residual=False with --n_layers={cfg.n_layers} never trains from zero (every layer's "
                        f"output and gradient stays 0); use --n_layers=1, --residual=True or --init_std > 0")


def attends_causally(cfg: TrainConfig) -> bool:
    """--attention resolved: auto is causal for the next-token objective, all positions for the masked one."""
    return cfg.attention == "causal" or (cfg.attention == "auto" and cfg.objective == "causal")


def build_model(cfg: TrainConfig, vocab_size: int) -> AttentionOnlyTransformer:
    """The model a run trains: `vocab_size` is the model's (a masked run's holds the MASK token too)."""
    return AttentionOnlyTransformer(vocab_size, cfg.seq_len, cfg.n_layers, cfg.init_std, causal=attends_causally(cfg),
                                    residual=cfg.residual, output=cfg.output)


def statistics_variant(cfg: TrainConfig) -> str:
    """The masked statistics' variant (common/theory/masked_statistics.py): G of the identity output or
    of the trained W_O.  Exact leading terms exist for (residual, trained) and (no residual, identity);
    the other two combinations train, and their log holds the loss only."""
    return "identity" if cfg.output == "identity" else "residual"


def leading_term_theory(cfg: TrainConfig) -> bool:
    """Whether the run has leading terms (the log's cosines, tiny_causal.py's theory directions): two
    architectures (residual + trained W_O; no residual + identity output); with causal attention the
    statistics are §2's (the residual model's, next-token objective), with attention over all positions
    §16's (either objective, either model)."""
    return cfg.residual == (cfg.output == "trained") and (
        not attends_causally(cfg) or (cfg.objective == "causal" and cfg.output == "trained"))


def make_optimizer(cfg: TrainConfig, model):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr)


def optimizer_path(checkpoint) -> Path:
    """Where the optimiser state of a checkpoint lies: `checkpoints/optimizer_XXXXXXXX.safetensors` beside
    `step_XXXXXXXX.safetensors`, so the checkpoint itself holds the model (and path-exact state) alone."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(OPTIMIZER_FILE + checkpoint.name[len("step_"):])


def optimizer_tensors(model, optimizer) -> dict:
    """The optimiser's per-parameter state as named tensors (`layers.0.V.exp_avg`, …): empty for plain
    SGD; for Adam its step count and moments, for the parameters that have trained so far."""
    names = {id(p): name for name, p in model.named_parameters()}
    return {f"{names[id(p)]}.{key}": (value if torch.is_tensor(value) else torch.tensor(value)).detach().clone()
            for p, state in optimizer.state.items() for key, value in state.items()}


def load_optimizer_tensors(model, optimizer, tensors: dict) -> None:
    """Restore what `optimizer_tensors` saved; the step counts stay on the CPU (torch's non-capturable
    Adam keeps them there), the moments go to their parameter's device."""
    parameters = dict(model.named_parameters())
    for name, value in tensors.items():
        parameter, _, key = name.rpartition(".")
        if parameter not in parameters:
            raise UserError(f"the checkpoint's optimiser state names {parameter!r}, which this model does not have")
        target = parameters[parameter]
        optimizer.state[target][key] = value.clone() if key == "step" else value.to(target.device).clone()


def all_positions_statistics(shard: torch.Tensor, cfg: TrainConfig, vocab_size: int, proc: Processes):
    """docs/theory.md §16 statistics (attention over all positions) of the sequences `shard` [N, T+1] (this
    process's share, statistics_of), for the model's `vocab_size`: for the masked objective their expectation
    over the corruption of the first T tokens (MASK = the last id), for the next-token objective those of
    x → y with every position selected.  Accumulated in float64 on the CPU, summed over the processes
    (cpu_all_reduce), then moved to the run's device."""
    from common.theory.masked_statistics import expected_masked_statistics, masked_statistics
    options = dict(variant=statistics_variant(cfg), chunk_size=cfg.stats_chunk, progress=cfg.progress and proc.main,
                   all_reduce=cpu_all_reduce(proc) if proc.world > 1 else None)
    if cfg.objective == "masked":
        stats = expected_masked_statistics(shard[:, :cfg.seq_len], masking_scheme(cfg, vocab_size - 1), vocab_size,
                                           **options)
    else:
        x, y = shard[:, :-1], shard[:, 1:]
        stats = masked_statistics(x, y, torch.ones_like(x, dtype=torch.bool), vocab_size, **options)
    return replace(stats, **{name: value.to(proc.device) for name, value in stats.tensors().items()})


def cpu_all_reduce(proc: Processes):
    """A sum over the processes for CPU tensors: through the run's device when that is not the CPU (nccl
    reduces GPU tensors only), in place either way."""
    def all_reduce(tensor: torch.Tensor) -> None:
        if tensor.device == proc.device:
            proc.all_reduce(tensor)
            return
        moved = tensor.to(proc.device)
        proc.all_reduce(moved)
        tensor.copy_(moved)
    return all_reduce


def statistics_of(tokens: torch.Tensor, cfg: TrainConfig, vocab_size: int, proc: Processes):
    """docs/theory.md §2 statistics of the training sequences (or the first `stats_sequences` of epoch 0),
    each process taking every world-th sequence; float64, all-reduced.  The masked objective, or attention
    over all positions: §16's (all_positions_statistics), for the model's `vocab_size`, sharded alike."""
    chosen = tokens
    if cfg.stats_sequences:
        chosen = tokens[epoch_order(len(tokens), cfg.seed, 0)[:cfg.stats_sequences]]
    shard = chosen[proc.rank::proc.world].long()
    if len(shard) == 0:
        raise UserError(f"too few statistics sequences ({len(chosen)}) for {proc.world} processes")
    if cfg.objective == "masked" or not attends_causally(cfg):
        return all_positions_statistics(shard, cfg, vocab_size, proc)
    return compute_statistics(shard[:, :-1], shard[:, 1:], vocab_size, chunk_size=cfg.stats_chunk,
                              device=proc.device, all_reduce=proc.all_reduce if proc.world > 1 else None,
                              progress=cfg.progress and proc.main)


# -- the run -----------------------------------------------------------------------------------
# A run whose schedule ends far before the early regime could end learns nothing visible, however long
# it takes (docs/pipelines.md §3).  W_O's leading term τB̄ (docs/theory.md §3) moves the logit of b after a
# by τ·B̄[a, b]; the output softmax leaves uniform, the loss starts to fall and the next-order terms start
# to count (the end of the early regime, §10) as the largest of those changes, τ·max|B̄|, nears one nat,
# at τ₁ = 1/max|B̄|.  On the demo corpus τ₁ = 47, and the early regime was measured to end at τ ≈ 15–33,
# 0.3–0.7 τ₁ (docs/theory.md §10).  A run whose τ = ηs ends below this fraction of τ₁ — no logit moved
# by a tenth of a nat — therefore stops far before it, and the trainer says so before training.
TAU_WARNING_FRACTION = 0.1


class StepAbandoned(BaseException):
    """Ctrl-C arrived during a step's forward and backward passes: the step is dropped (a BaseException,
    as KeyboardInterrupt, so that no `except Exception` swallows it)."""


def _signal_point(grad):
    """A gradient hook that changes nothing: the backward pass, one call into C++, otherwise runs no
    Python until it ends, and Python runs a Ctrl-C handler only between its own instructions."""
    return None


class InterruptFlag:
    """Within the block, Ctrl-C (SIGINT) stops the run within about a second, leaving a state that a
    resumed run continues exactly.  While `abandonable` (a step's data, forward and backward passes, in
    one process) the handler raises StepAbandoned: the optimiser has not changed a weight yet, so the
    model is still that of the last completed step, and the step is simply not taken.  The optimiser's
    update closes that window (`close`, a step pre-hook); from there Ctrl-C only sets `raised` and the
    loop stops after the step it is in (the update, the path-exact tracker's update, a due log point and
    checkpoint).  Under torchrun the ranks always finish the step and agree to stop: one rank abandoning
    a step would leave the others waiting in its all-reduce."""

    def __init__(self, abandon: bool = True):
        self.raised, self._previous = False, None
        self.abandon, self.abandonable = abandon, False

    def open(self) -> None:
        self.abandonable = self.abandon

    def close(self, *hook_arguments) -> None:
        self.abandonable = False

    def _handler(self, signum, frame):
        self.raised = True
        if self.abandonable:
            self.abandonable = False
            raise StepAbandoned

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class Trainer:
    def __init__(self, cfg: TrainConfig, callbacks=(), log=None, short_by_design: bool = False):
        """`callbacks`: RunCallback objects (what the run writes besides logs and checkpoints);
        `log(line)`: where the plan of the run and the step-time estimate go (main process only;
        None: silent); `short_by_design`: the caller stops the run early on purpose (tiny_regime.py's
        measuring runs), so the warning of a run that ends far before its early regime is not given."""
        self.cfg, self.callbacks, self.short_by_design = cfg, list(callbacks), short_by_design
        self.log = log if log is not None else (lambda line: None)
        if cfg.resume:   # before any data is read: a wrong folder is the first thing to hear about
            check_resumable(cfg.out_dir)
        self.proc = setup_processes(cfg.device)
        configure_numerics(cfg.deterministic, cfg.tf32)
        for name in ("batch_size", "grad_accum", "epochs", "n_layers"):
            if getattr(cfg, name) < 1:
                raise UserError(f"--{name} must be at least 1 (got {getattr(cfg, name)})")
        if cfg.tau < 0 or cfg.lr <= 0:
            raise UserError(f"--lr must be positive and --tau at least 0 (got lr {cfg.lr}, tau {cfg.tau})")
        check_settings(cfg)
        self.tokens, self.vocabulary, vocab_sha, fingerprint = load_training_data(cfg)
        cfg = self._set_up_objective()
        self.out_dir = Path(cfg.out_dir)
        n, world = len(self.tokens), self.proc.world
        self.global_batch = cfg.batch_size * cfg.grad_accum * world
        steps = n // self.global_batch
        if steps == 0:
            raise UserError(too_few_sequences(n, cfg, world))
        self.steps_per_epoch = min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps
        # τ = ηs: with --tau the run is as many steps as reach it, whatever --epochs says
        self.total_steps = (max(1, math.ceil(cfg.tau / cfg.lr - 1e-9)) if cfg.tau > 0
                            else cfg.epochs * self.steps_per_epoch)
        self.stop_step = min(self.total_steps, cfg.max_steps) if cfg.max_steps else self.total_steps
        # the run's regular log points; the last step of a run is logged too, whatever stopped it
        self.log_steps = event_steps(cfg.log_every, self.steps_per_epoch, self.total_steps)
        self.run_meta = {"vocab_size": self.n_words, "seq_len": cfg.seq_len, "n_layers": cfg.n_layers,
                         "init_std": cfg.init_std, "lr": cfg.lr, "global_batch": self.global_batch,
                         "seed": cfg.seed, "steps_per_epoch": self.steps_per_epoch,
                         "stats_sequences": cfg.stats_sequences, "data_fingerprint": fingerprint,
                         "vocabulary_sha256": vocab_sha,
                         "objective": cfg.objective, "mask_prob": cfg.mask_prob, "mask_split": list(cfg.mask_split),
                         "attention": "causal" if attends_causally(cfg) else "all", "residual": cfg.residual,
                         "output": cfg.output, "optimizer": cfg.optimizer,
                         "uniform_attention_steps": cfg.uniform_attention_steps,
                         "mask_token": self.mask_token, "model_vocab_size": len(self.vocabulary)}
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, len(self.vocabulary))
        if cfg.uniform_attention_steps:   # stage 1 holds W and P at zero (also with --init_std > 0)
            with torch.no_grad():
                for layer in self.model.layers:
                    layer.W.zero_()
                    layer.P.zero_()
        self.tracker = (PathExactTracker(len(self.vocabulary), cfg.seq_len, cfg.lr, self.proc.device,
                                         **self._tracker_variant()) if cfg.path_exact else None)
        self._optimizer_state = {}   # a resumed run's optimiser state, restored once the optimiser exists
        self.step, self.loss_sum, self.loss_count, self.logs = 0, 0.0, 0, []
        self.recorded_data_dir = str(cfg.data_dir)   # what checkpoints record (a caller may name the final folder)
        self._prepare_out_dir()
        self.model.to(self.proc.device)
        if self.proc.main:   # a pass that can take minutes at the paper's sizes (Ctrl-C stops it, nothing written)
            self.log(f"computing the corpus statistics of {_count(self.stats_count(), 'sequence')} before training")
        started = time.perf_counter()
        self.stats = statistics_of(self.tokens, cfg, len(self.vocabulary), self.proc)
        self.stats_seconds = time.perf_counter() - started   # reported with the plan (`run`)
        self.optimizer = make_optimizer(cfg, self.model)
        load_optimizer_tensors(self.model, self.optimizer, self._optimizer_state)
        self.ddp = None
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.proc.device.index] if self.proc.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)

    def _set_up_objective(self) -> TrainConfig:
        """The objective and the model variant (docs/theory.md §16): a masked run's vocabulary gains MASK as
        its last id; whether the log can hold leading-term cosines; the settings the trainer changes and the
        callbacks it leaves out, each said in `notes` with the plan.  Returns the settings as run."""
        cfg, self.notes = self.cfg, []
        if cfg.path_exact and cfg.optimizer != "sgd":   # friendlier than a refusal: the run is still wanted
            cfg = self.cfg = replace(cfg, path_exact=False)
            self.notes.append(f"path_exact is off: the path-exact terms are plain SGD's, not {cfg.optimizer}'s")
        self.masked = cfg.objective == "masked"
        self.n_words, self.scheme, self.mask_token = len(self.vocabulary), None, None
        if self.masked:
            from common.corpus.tokenize import mask_token
            self.mask_token = mask_token(cfg.data_dir, self.vocabulary)
            self.scheme = masking_scheme(cfg, self.n_words)
            self.vocabulary = list(self.vocabulary) + [self.mask_token]
            self.notes.append(f"masked objective: every step draws a fresh corruption of its batch (mask_prob "
                              f"{cfg.mask_prob:g}, MASK / own token / random word "
                              f"{'/'.join(f'{p:g}' for p in cfg.mask_split)}); the model's vocabulary is the "
                              f"{self.n_words:,} words + {self.mask_token} (id {self.n_words})")
        self.theory = leading_term_theory(cfg)   # exact leading terms: the log's cosines
        if not self.theory:
            self.notes.append("no leading-term theory for this combination of objective, attention, residual and "
                              "output: the log holds the loss only")
            if cfg.path_exact:
                cfg = self.cfg = replace(cfg, path_exact=False)
        if self.masked or not (attends_causally(cfg) and cfg.residual and cfg.output == "trained"):
            left_out = [c for c in self.callbacks if not c.any_model]
            self.callbacks = [c for c in self.callbacks if c.any_model]
            if left_out:
                self.notes.append(f"{', '.join(type(c).__name__ for c in left_out)} not written: "
                                  f"{'it reads' if len(left_out) == 1 else 'they read'} the causal model of "
                                  f"docs/theory.md §1 only")
        return cfg

    def _prepare_out_dir(self) -> None:
        existing = checkpoint_paths(self.out_dir)
        if not self.cfg.resume:
            if existing or (self.out_dir / LOG_FILE).exists():
                raise UserError(f"{self.out_dir} already holds a run; pass --resume=True to continue it "
                                f"or choose another --out_dir")
            return
        if not existing:
            raise UserError(f"no checkpoint in {self.out_dir / CHECKPOINT_DIR} to resume from; "
                            f"drop --resume to start a new run")
        tensors, meta = load_tensors(existing[-1])
        check_same_run(meta, self.run_meta, existing[-1])
        if self.cfg.optimizer != "sgd":
            if not optimizer_path(existing[-1]).exists():
                raise UserError(f"checkpoint {existing[-1]} has no optimiser state beside it "
                                f"({optimizer_path(existing[-1]).name}); an {self.cfg.optimizer} run cannot continue "
                                f"exactly without it — choose a new --out_dir")
            self._optimizer_state = load_tensors(optimizer_path(existing[-1]), "optimiser state")[0]
        state, tracker_state = split_checkpoint(tensors)
        if self.tracker is not None:
            if not tracker_state:
                raise UserError(f"checkpoint {existing[-1]} has no path-exact state (it was trained with "
                                f"--path_exact=False); resume with --path_exact=False")
            self.tracker.load_state_dict(tracker_state)
        missing = set(self.model.state_dict()) ^ set(state)
        if missing:
            raise UserError(f"checkpoint {existing[-1]} does not hold this model's weights ({sorted(missing)[:3]})")
        self.model.load_state_dict(state)
        self.step, self.loss_sum, self.loss_count = meta["step"], meta["loss_sum"], meta["loss_count"]
        log_path = self.out_dir / LOG_FILE
        logs = read_json(log_path, "training log") if log_path.exists() else []
        # drop entries after the crash, and the off-schedule entry of a run stopped early (--max_steps):
        # the continued log is then the log of an uninterrupted run
        self.logs = [entry for entry in logs if entry["step"] <= self.step and entry["step"] in self.log_steps]
        if self.step >= self.stop_step:
            raise UserError(f"the run in {self.out_dir} is complete (step {self.step} of {self.stop_step}); "
                            f"raise --epochs, --tau or --max_steps to train it further, or choose a new --out_dir")

    # -- pieces of the loop
    def micro_batches(self, order, step_in_epoch):
        cfg, proc = self.cfg, self.proc
        for m in range(cfg.grad_accum):
            idx = micro_batch_indices(order, step_in_epoch, m, proc.rank, cfg.batch_size, cfg.grad_accum,
                                      proc.world)
            batch = self.tokens[idx].to(proc.device, non_blocking=True).long()
            yield batch[:, :-1], batch[:, 1:]

    def masked_micro_batches(self, order, epoch: int, step_in_epoch: int):
        """(this process's micro-batches (x̃, y, selected), selected positions in the whole global batch) of
        one masked step: the global batch's corruption (global_batch_corruption), cut as micro_batches cuts."""
        cfg, proc = self.cfg, self.proc
        clean, x_tilde, selected = global_batch_corruption(self.tokens, order, step_in_epoch, self.global_batch,
                                                           self.scheme, cfg.seed, epoch)
        batches = []
        for m in range(cfg.grad_accum):
            start = m * cfg.batch_size * proc.world + proc.rank * cfg.batch_size
            batches.append(tuple(t[start:start + cfg.batch_size].to(proc.device, non_blocking=True)
                                 for t in (x_tilde, clean, selected)))
        return batches, int(selected.sum())

    def _tracker_variant(self) -> dict:
        """The path-exact tracker's model variant: nothing to say for the causal model of §1."""
        cfg = self.cfg
        if attends_causally(cfg) and cfg.residual and cfg.output == "trained":
            return {}
        return {"causal": attends_causally(cfg), "variant": statistics_variant(cfg)}

    def _hold_tracked_attention_at_zero(self) -> None:
        """The path-exact recursion of a uniform-attention step: W and P held at zero, as in the model."""
        self.tracker.attention.zero_()
        self.tracker.position.zero_()

    def frozen(self) -> list:
        """The parameters the next step leaves alone: W and P during the uniform-attention stage."""
        if self.step >= self.cfg.uniform_attention_steps:
            return []
        return [p for layer in self.model.layers for p in (layer.W, layer.P)]

    def log_values(self) -> dict:
        """A log entry's cosines and relative errors at the current step (computing them changes nothing)."""
        values = {}
        if self.theory:
            values.update(theory_entry(self.model, self.stats, self.cfg.lr, self.step,
                                       self.cfg.uniform_attention_steps))
        if self.tracker is not None:
            values.update(path_entry(self.model, self.tracker.predictions()))
        return values

    def log_point(self) -> dict:
        entry = {"epoch": self.step / self.steps_per_epoch, "step": self.step,
                 "loss": self.loss_sum / max(self.loss_count, 1), "lr": self.cfg.lr}
        if self.masked and self.loss_count == 0:   # every step since the last entry selected no position
            entry["loss"] = None
        entry.update(self.log_values())
        self.logs.append(entry)
        if self.step in self.log_steps:  # an off-schedule last entry leaves the running mean to the next one
            self.loss_sum, self.loss_count = 0.0, 0
        if self.proc.main:
            write_json(self.out_dir / LOG_FILE, self.logs)
        for callback in self.callbacks:
            callback.on_log(self, entry)
        return entry

    def save_checkpoint(self) -> Path:
        path = self.out_dir / CHECKPOINT_DIR / f"step_{self.step:08d}.safetensors"
        if self.proc.main:
            meta = dict(self.run_meta, step=self.step, epoch=self.step / self.steps_per_epoch,
                        loss_sum=self.loss_sum, loss_count=self.loss_count, data_dir=self.recorded_data_dir,
                        max_sequences=self.cfg.max_sequences)
            tensors = dict(self.model.state_dict())
            if self.tracker is not None:
                tensors.update(self.tracker.state_dict(prefix=CHECKPOINT_PREFIX))
            if self.cfg.optimizer != "sgd":   # Adam's moments, saved first: a checkpoint in place has its state
                save_tensors(optimizer_path(path), optimizer_tensors(self.model, self.optimizer),
                             {"step": self.step, "optimizer": self.cfg.optimizer})
            save_tensors(path, tensors, meta)
            for old in checkpoint_paths(self.out_dir)[:-max(1, self.cfg.keep_checkpoints)]:
                for stale in (old, optimizer_path(old)):
                    stale.unlink(missing_ok=True)
                    stale.with_suffix(".json").unlink(missing_ok=True)
        return path

    def run(self) -> dict:
        from common.progress import progress_bar
        cfg, proc = self.cfg, self.proc
        log_steps = self.log_steps | {self.stop_step}
        save_steps = event_steps(cfg.save_every, self.steps_per_epoch, self.total_steps) | {self.stop_step}
        existed = self.out_dir.exists()   # a fresh run that fails removes what it wrote (`_discard_outputs`)
        if proc.main:
            write_json(self.out_dir / "config.json", dict(asdict(cfg), **self.run_meta, world_size=proc.world,
                                                          total_steps=self.total_steps,
                                                          data_dir=self.recorded_data_dir))
            self.log(self.plan())
            for note in self.notes:
                self.log(f"note: {note}")
            self.log(f"the corpus statistics of {_count(self.stats_count(), 'sequence')} took "
                     f"{_duration(self.stats_seconds)}")
            warning = None if self.short_by_design else self.tau_warning()
            if warning:
                self.log(f"warning: {warning}")
        model = self.ddp or self.model
        no_sync = self.ddp.no_sync if self.ddp is not None else None
        bar = progress_bar(total=self.stop_step, initial=self.step, desc="training", disable=not (cfg.progress and proc.main),
                   dynamic_ncols=True)
        interrupt = InterruptFlag(abandon=proc.world == 1)
        closing = [self.optimizer.register_step_pre_hook(interrupt.close)]   # the update ends the abandonable part
        if interrupt.abandon:   # the backward pass runs Python at each parameter's gradient: Ctrl-C acts there too
            closing += [p.register_hook(_signal_point) for p in self.model.parameters() if p.requires_grad]
        with interrupt:
            try:
                self._train_until_stop(model, no_sync, log_steps, save_steps, bar, interrupt)
            except StepAbandoned:   # the weights, the tracker and the step count are the last completed step's
                pass
            except UserError as error:   # a diverging loss: no partial run left behind to be resumed
                if cfg.resume:
                    raise
                if proc.main:
                    self._discard_outputs(existed)
                raise UserError(f"{error} (nothing of this run was kept in {self.out_dir})") from None
            finally:
                for handle in closing:
                    handle.remove()
        bar.close()
        if interrupt.raised and self.step < self.stop_step:
            if proc.main:
                path = self.save_checkpoint()
                self.log(f"interrupted at step {self.step}; checkpoint {path} saved. Continue the run with:\n"
                         f"  {resume_command(self.out_dir, cfg)}")
            raise SystemExit(130)
        return self._finish()

    def _discard_outputs(self, keep_folder: bool) -> None:
        """Remove what this fresh run wrote (its config, log and checkpoints; the folder too when the run
        created it)."""
        import shutil
        for name in ("config.json", LOG_FILE):
            (self.out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.out_dir / CHECKPOINT_DIR, ignore_errors=True)
        if not keep_folder and self.out_dir.exists() and not any(self.out_dir.iterdir()):
            self.out_dir.rmdir()

    def plan(self) -> str:
        """The run in one line: sequences, batch, steps, τ = ηs at the end."""
        cfg = self.cfg
        length = (f"until τ = ηs reaches {cfg.tau:g}" if cfg.tau > 0 else f"{cfg.epochs} epochs")
        return (f"{len(self.tokens):,} training sequences of {cfg.seq_len + 1} tokens; global batch "
                f"{self.global_batch} → {self.steps_per_epoch:,} steps per epoch; {length}: "
                f"{self.stop_step:,} steps (τ = {cfg.lr * self.stop_step:g})"
                + (f", resuming at step {self.step:,}" if self.step else ""))

    def stats_count(self) -> int:
        """The number of sequences the corpus statistics are computed on (statistics_of)."""
        return min(self.cfg.stats_sequences or len(self.tokens), len(self.tokens))

    def estimate(self, step_seconds: float, log_steps: set) -> str:
        """The time the rest of the run takes, said after its first step: the steps left at that step's
        time plus the log points left at the time of one log point's computation, timed here (its values
        are not recorded).  The corpus statistics, before the first step, were reported with the plan."""
        started = time.perf_counter()
        self.log_values()
        log_seconds = time.perf_counter() - started
        steps_left = self.stop_step - self.step
        logs_left = sum(1 for s in log_steps if self.step <= s <= self.stop_step)
        return (f"one step took {step_seconds:.2f} s and a log point {log_seconds:.2f} s; the "
                f"{_count(steps_left, 'step')} and {_count(logs_left, 'log point')} left take about "
                f"{_duration(step_seconds * steps_left + log_seconds * logs_left)}")

    def tau_warning(self):
        """The warning for a run whose schedule ends far before the early regime could end (None when it
        does not, or when the run is not plain SGD on a model with a trained W_O): see TAU_WARNING_FRACTION."""
        cfg = self.cfg
        if not (self.theory and cfg.optimizer == "sgd" and cfg.output == "trained") or self.stats.bigram is None:
            return None
        largest, tau = float(self.stats.bigram.abs().max()), cfg.lr * self.total_steps
        if largest == 0 or tau * largest >= TAU_WARNING_FRACTION:
            return None
        tau_one = 1 / largest
        suggested = float(f"{tau_one / 2:.2g}")
        steps_needed = math.ceil(suggested / cfg.lr - 1e-9)
        return (f"the run ends at τ = ηs = {tau:g}, far before its early regime could end: W_O's leading term τB̄ "
                f"moves no logit by more than τ·max|B̄| = {tau * largest:.2g} nat, so the loss stays near ln V = "
                f"{math.log(len(self.vocabulary)):.2f}. A logit moves by one nat at τ = 1/max|B̄| = {tau_one:.3g}: "
                f"train to about half that, --tau={suggested:g} ({_count(steps_needed, 'step')} "
                f"at --lr={cfg.lr:g}; --lr={suggested / self.total_steps:.2g} reaches it in the planned "
                f"{_count(self.total_steps, 'step')}); tiny_regime.py predicts where this corpus's early regime "
                f"ends (docs/pipelines.md §10)")

    def _train_until_stop(self, model, no_sync, log_steps, save_steps, bar, interrupt) -> None:
        cfg, proc = self.cfg, self.proc
        order, order_epoch, timing = None, None, None
        while self.step < self.stop_step:
            epoch, k = divmod(self.step, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(len(self.tokens), cfg.seed, epoch), epoch
            frozen, n_selected = self.frozen(), None
            started = time.perf_counter()
            interrupt.open()   # Ctrl-C from here until the optimiser's update abandons the step (InterruptFlag)
            if self.masked:   # the corruption drawn for this step (global_batch_corruption)
                batches, n_selected = self.masked_micro_batches(order, epoch, k)
                loss = masked_step(model, self.optimizer, batches, n_selected, proc.world, no_sync, frozen)
            else:
                batches = list(self.micro_batches(order, k))
                loss = sgd_step(model, self.optimizer, batches, no_sync, frozen)
            if self.tracker is not None:   # the same global batch: every micro-batch, every rank
                self.tracker.step(batches, proc.all_reduce if proc.world > 1 else None)
                if frozen:
                    self._hold_tracked_attention_at_zero()
            stop = interrupt.raised
            if proc.world > 1:   # ranks agree on the loss and on stopping (an interrupt reaches each rank)
                reduced = torch.tensor([loss, float(stop)], dtype=torch.float64, device=proc.device)
                proc.all_reduce(reduced)
                # a masked step's parts already sum to the global mean (masked_step)
                loss, stop = float(reduced[0]) / (1 if self.masked else proc.world), bool(reduced[1] > 0)
            if not math.isfinite(loss):
                raise UserError(f"the loss became {loss} at step {self.step + 1}; lower --lr")
            self.step += 1
            if timing is None:   # the first step of this process: the estimate the user plans with
                timing = time.perf_counter() - started
                self.log(self.estimate(timing, log_steps))
            if n_selected != 0:   # a masked step that selected no position has no loss to average
                self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", epoch=f"{self.step / self.steps_per_epoch:.2f}", refresh=False)
            if self.step in log_steps:
                entry = self.log_point()
                bar.set_postfix({name: f"{entry[key]:.{digits}f}" for name, key, digits in
                                 (("loss", "loss", 4), ("cos_W_O", "W_O_B_bar", 3)) if entry.get(key) is not None},
                                refresh=False)
            if self.step in save_steps:
                self.save_checkpoint()
            if stop:
                interrupt.raised = True
                return

    def _finish(self) -> dict:
        proc = self.proc
        if not checkpoint_paths(self.out_dir) and proc.main:
            self.save_checkpoint()
        result = {"main": proc.main, "out_dir": str(self.out_dir), "step": self.step,
                  "log": self.logs[-1] if self.logs else None, "outputs": {}}
        if self.step == self.stop_step:
            for callback in self.callbacks:
                result["outputs"].update(callback.on_end(self) or {})
        if proc.world > 1:
            torch.distributed.barrier()
        return result


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _count(n: int, noun: str) -> str:
    """'1 step', '600 steps'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def resume_command(out_dir, cfg: TrainConfig = None) -> str:
    """The command that continues the run in `out_dir`: its script and its folder (the trajectory's
    settings come from the run's config.json), and the settings of the interrupted invocation that
    config.json does not carry over (PER_INVOCATION) where they differ from the defaults — above all
    --max_steps, without which the continued run would train on to the end of the schedule."""
    import shlex
    import sys
    script = Path(sys.argv[0]).name if sys.argv else ""
    script = script if script.startswith("tiny_self_attn_") else "tiny_self_attn_natural.py"   # (not pytest's)
    command = f"python {script} --out_dir={shlex.quote(str(out_dir))} --resume=True"
    defaults = TrainConfig.from_settings({})
    for name in ("max_steps", "device", "progress"):
        if cfg is not None and getattr(cfg, name) != getattr(defaults, name):
            command += f" --{name}={shlex.quote(str(getattr(cfg, name)))}"
    return command


def check_resumable(out_dir) -> None:
    """A run to resume must have a checkpoint: said before any data is read."""
    if not checkpoint_paths(out_dir):
        where = Path(out_dir)
        raise UserError(f"no checkpoint to resume from in {where / CHECKPOINT_DIR}"
                        + ("" if where.exists() else f" ({where} does not exist)")
                        + "; drop --resume to start a new run")


def too_few_sequences(n: int, cfg: TrainConfig, world: int) -> str:
    """The error for a data set smaller than one global batch, naming the levers that give more
    sequences per batch in order of effect (only those: a shorter T that still gives no more sequences,
    or a larger vocabulary when every story is kept already, is left out), with the count each would
    give where it can be computed from the story lengths (read here, on the error path only, not at
    every start) or the tokenizer's summary."""
    from common.corpus.tokenize import load_stories, sequence_counts, sequences_at_other_vocab_sizes, story_lengths
    lengths = story_lengths(load_stories(cfg.data_dir)[0])
    batch = cfg.batch_size * cfg.grad_accum * world
    shorter = [t for t in (128, 64, 32, 16) if t < cfg.seq_len]
    counts = sequence_counts(lengths, shorter, cfg.windows)
    levers = []
    for t in shorter:
        if counts[t] > n:
            levers.append(f"--seq_len={t} ({_count(counts[t], 'sequence')})")
            if counts[t] >= batch:
                break
    if not cfg.windows:
        windows = sequence_counts(lengths, cfg.seq_len, True)[cfg.seq_len]
        if windows > n:
            levers.append(f"--windows=True ({windows:,} at --seq_len={cfg.seq_len})")
    # a larger vocabulary keeps more stories under the natural tokenizer's drop rule only (not with
    # --keep_unknown=True, which keeps them all, nor with BPE); summary.json counted the sequences
    # other vocabulary sizes would give at the tokenizer's --seq_len
    summary_path = Path(cfg.data_dir) / "summary.json"
    summary = read_json(summary_path, "tokenizer summary") if summary_path.exists() else {}
    larger = {v: count for v, count in sequences_at_other_vocab_sizes(summary, cfg.seq_len, cfg.windows).items()
              if count > n}
    if larger:
        levers.append("a larger --vocab_size in the tokenizer (keeps more stories: "
                      + ", ".join(f"--vocab_size={v} gives {count:,}" for v, count in sorted(larger.items())) + ")")
    elif (summary.get("tokenizer") == "natural" and not summary.get("unknown_token")
          and summary.get("stories_kept", 0) < summary.get("stories_in", 0)
          and summary.get("seq_len") != cfg.seq_len):   # not counted at this T: it may help
        dropped = summary["stories_in"] - summary["stories_kept"]
        levers.append(f"a larger --vocab_size in the tokenizer (it dropped {dropped:,} of {summary['stories_in']:,} "
                      f"stories for a rarer token)")
    levers.append(f"--batch_size={max(1, n // (cfg.grad_accum * world))} or lower" if n >= cfg.grad_accum * world
                  else "a smaller --batch_size")
    return (f"{_count(n, 'training sequence')} {'is' if n == 1 else 'are'} fewer than one global batch "
            f"({cfg.batch_size} × {cfg.grad_accum} accumulation × {world} process{'es' if world > 1 else ''} "
            f"= {batch}); levers, most effective first: " + "; ".join(levers))


# settings a resumed run takes from the command line, not from the run's saved config.json; of the
# others, those that change the trajectory (TRAJECTORY_KEYS) are refused when they differ, and a
# different --epochs or --tau changes where the run ends (extending a finished run)
PER_INVOCATION = ("out_dir", "resume", "device", "progress", "max_steps")


def resolve_config(config: dict) -> TrainConfig:
    """The run's settings. A resumed run (`resume=True`) takes every setting the user did not give
    explicitly from its own `config.json`, so `--out_dir=… --resume=True` alone continues it; a
    setting given explicitly that changes the trajectory is refused by the checkpoint check.
    `config["_explicit"]` (set by `common.config.override`) names the settings given on the command
    line; without it every key of `config` counts as given."""
    cfg = TrainConfig.from_settings(config)
    saved_path = Path(cfg.out_dir) / "config.json"
    if not cfg.resume or not saved_path.exists():
        return cfg
    saved = read_json(saved_path, "run configuration")
    explicit = set(config.get("_explicit", config))
    merged = {f.name: getattr(cfg, f.name) if f.name in explicit or f.name in PER_INVOCATION or f.name not in saved
              else saved[f.name] for f in fields(TrainConfig)}
    return TrainConfig(**merged)


def train(config: dict, callbacks=(), log=None) -> dict:
    """Train with the hyperparameters in `config` (a script's settings after `override`);
    `callbacks`: what the run writes besides logs and checkpoints (RunCallback); `log(line)`: the plan
    and the step-time estimate (main process)."""
    try:
        return Trainer(resolve_config(config), callbacks, log).run()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def final_summary(result: dict) -> list:
    """The run's last log entry and its outputs as lines for the script to print."""
    lines = [f"run in {result['out_dir']} ended at step {result['step']}"]
    entry = result.get("log")
    if entry:
        kinds = {}
        for key, value in entry.items():
            parsed = parse_log_key(key)
            if parsed and parsed.reference == "corpus" and not parsed.rel_err:
                kinds.setdefault(parsed.kind, []).append(value)
        cosines = ", ".join(f"{kind} {min(v):.3f}" + (f"–{max(v):.3f}" if len(v) > 1 else "")
                            for kind, v in kinds.items())
        loss = "— (no selected position)" if entry["loss"] is None else f"{entry['loss']:.4f}"
        lines.append(f"final loss {loss}" + (f"; cosine with theory: {cosines}" if cosines
                                             else "; no leading-term theory for this model (the log holds the loss)"))
    lines += [f"{name}: {path}" for name, path in result.get("outputs", {}).items()]
    return lines


def checkpoint_model(tensors: dict, meta: dict) -> AttentionOnlyTransformer:
    """The model a checkpoint holds (its tensors and sidecar metadata): the run's variant and model vocabulary
    (a masked run's words + MASK), loaded from the model's tensors (the path-exact state left out); a
    checkpoint older than these records is the causal model of docs/theory.md §1."""
    settings = dict(TRAJECTORY_DEFAULTS, **meta)
    model = AttentionOnlyTransformer(meta.get("model_vocab_size", meta["vocab_size"]), meta["seq_len"],
                                     meta["n_layers"], causal=settings["attention"] == "causal",
                                     residual=settings["residual"], output=settings["output"])
    model.load_state_dict(split_checkpoint(tensors)[0])
    return model


def load_run(checkpoint, data_dir: str = "", device: str = "cpu", progress: bool = False):
    """(model, tokens, vocabulary, statistics, metadata) of a checkpoint and the data it was trained
    on (its recorded `data_dir` unless another is given), refusing data that does not match it.  The model
    is the run's variant; a masked run's vocabulary ends with its MASK token, as its model's does.
    The settings come from the run's own `config.json` (beside `checkpoints/`), else the sidecar."""
    tensors, meta = load_tensors(checkpoint)
    if "data_fingerprint" not in meta:
        raise UserError(f"{checkpoint} has no training metadata (its .json sidecar); it was not written "
                        f"by tiny_self_attn_*.py")
    config_path = Path(checkpoint).resolve().parent.parent / "config.json"
    saved = read_json(config_path, "run configuration") if config_path.exists() else meta
    cfg = TrainConfig.from_settings(dict(saved, data_dir=data_dir or meta["data_dir"], progress=progress,
                                         device=device))
    from common.corpus.tokenize import free_mask_token
    tokens, vocabulary, vocab_sha, fingerprint = load_training_data(cfg)
    if vocab_sha != meta["vocabulary_sha256"] or len(vocabulary) != meta["vocab_size"]:
        raise UserError(f"the vocabulary in {cfg.data_dir} does not match checkpoint {checkpoint}; "
                        f"pass the --data_dir it was trained on")
    if fingerprint != meta["data_fingerprint"]:
        raise UserError(f"the sequences in {cfg.data_dir} are not those checkpoint {checkpoint} was trained "
                        f"on; pass the --data_dir it was trained on")
    if cfg.objective == "masked":   # the model's vocabulary: the words + MASK (the name the run recorded)
        vocabulary = list(vocabulary) + [meta.get("mask_token") or free_mask_token(vocabulary)]
    model = checkpoint_model(tensors, meta)
    proc = Processes(0, 1, resolve_device(device))
    model.to(proc.device)
    return model, tokens, vocabulary, statistics_of(tokens, cfg, len(vocabulary), proc), meta
