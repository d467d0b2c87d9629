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
              for `epochs`; before training the trainer reports the sequences, the steps and, after the
              first step, its measured time and the estimated time of the run (through `log`)
"""
import contextlib
import hashlib
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from common.theory.alignment import path_entry, theory_entry
from common.config import Settings
from common.device import Processes, configure_numerics, resolve_device, setup_processes
from common.io import UserError, load_tensors, read_json, save_tensors, write_json
from common.theory.model import AttentionOnlyTransformer
from common.theory.path_exact import CHECKPOINT_PREFIX, PathExactTracker, split_checkpoint
from common.theory.statistics import compute_statistics
from common.theory.weight_kinds import parse_log_key

LOG_FILE = "training_logs.json"
CHECKPOINT_DIR = "checkpoints"
# settings that must agree between a checkpoint and the run resuming from it
TRAJECTORY_KEYS = ("vocab_size", "seq_len", "n_layers", "init_std", "lr", "global_batch", "seed",
                   "steps_per_epoch", "stats_sequences", "data_fingerprint", "vocabulary_sha256")


@dataclass
class TrainConfig(Settings):
    """The trainer's settings.  Their meaning and defaults are those of tiny_self_attn_natural.py's
    hyperparameter block (the one home of each comment; tests/test_config.py proves the defaults below
    equal that block's, which they repeat only so that library code can build a config)."""
    data_dir: str = "data/natural"
    out_dir: str = "out/natural"
    seq_len: int = 200
    windows: bool = False
    n_layers: int = 3
    batch_size: int = 512
    grad_accum: int = 1
    epochs: int = 100
    tau: float = 0.0
    max_steps_per_epoch: int = 0
    max_steps: int = 0
    lr: float = 0.005
    init_std: float = 0.0
    path_exact: bool = True
    log_every: float = 2.0
    save_every: float = 10.0
    keep_checkpoints: int = 2
    stats_sequences: int = 0
    stats_chunk: int = 64
    max_sequences: int = 0
    seed: int = 42
    resume: bool = False
    report_top: int = 5
    report_tokens: int = 20
    report_words: str = ""
    report_view: str = "normalised"
    device: str = "auto"
    deterministic: bool = True
    tf32: bool = False
    progress: bool = True


class RunCallback:
    """What a run writes besides its log and checkpoints.  The trainer calls, on every process:
        on_log(trainer, entry)   after each log point, with the entry just appended to the log
        on_end(trainer)          once the run has reached its last step (not when interrupted);
                                 returns {name: path} of what it wrote, or None
    A callback reads the trainer's public state: `cfg`, `model`, `stats`, `tokens`, `vocabulary`,
    `step`, `logs`, `out_dir`, `proc` (write files on `proc.main` only)."""

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


def sgd_step(model, optimizer, micro_batches, no_sync=None) -> float:
    """One optimiser step over (x, y) micro-batches (gradients summed with weight 1/len); returns
    the mean loss. `no_sync`: DDP's context manager, used on every micro-batch but the last."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for i, (x, y) in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with (no_sync() if no_sync is not None and not last else contextlib.nullcontext()):
            logits = model(x)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten()) / len(micro_batches)
            loss.backward()
        total += loss.item()
    optimizer.step()
    return total


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
        if meta.get(key) != run[key]:
            raise UserError(f"checkpoint {path} comes from another configuration ({key} "
                            f"{meta.get(key)!r} there, {run[key]!r} now); resume with the same "
                            f"data and settings, or choose a new --out_dir")


def statistics_of(tokens: torch.Tensor, cfg: TrainConfig, vocab_size: int, proc: Processes):
    """docs/theory.md §2 statistics of the training sequences (or the first `stats_sequences` of epoch 0),
    each process taking every world-th sequence; float64, all-reduced."""
    chosen = tokens
    if cfg.stats_sequences:
        chosen = tokens[epoch_order(len(tokens), cfg.seed, 0)[:cfg.stats_sequences]]
    shard = chosen[proc.rank::proc.world].long()
    if len(shard) == 0:
        raise UserError(f"too few statistics sequences ({len(chosen)}) for {proc.world} processes")
    return compute_statistics(shard[:, :-1], shard[:, 1:], vocab_size, chunk_size=cfg.stats_chunk,
                              device=proc.device, all_reduce=proc.all_reduce if proc.world > 1 else None,
                              progress=cfg.progress and proc.main)


# -- the run -----------------------------------------------------------------------------------
class InterruptFlag:
    """Within the block, Ctrl-C (SIGINT) sets `raised` instead of raising mid-step, so the loop can
    finish the step it is in and save a checkpoint that a resumed run continues exactly."""

    def __init__(self):
        self.raised, self._previous = False, None

    def _handler(self, signum, frame):
        self.raised = True

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
    def __init__(self, cfg: TrainConfig, callbacks=(), log=None):
        """`callbacks`: RunCallback objects (what the run writes besides logs and checkpoints);
        `log(line)`: where the plan of the run and the step-time estimate go (main process only;
        None: silent)."""
        self.cfg, self.callbacks = cfg, list(callbacks)
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
        self.tokens, self.vocabulary, vocab_sha, fingerprint = load_training_data(cfg)
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
        self.run_meta = {"vocab_size": len(self.vocabulary), "seq_len": cfg.seq_len, "n_layers": cfg.n_layers,
                         "init_std": cfg.init_std, "lr": cfg.lr, "global_batch": self.global_batch,
                         "seed": cfg.seed, "steps_per_epoch": self.steps_per_epoch,
                         "stats_sequences": cfg.stats_sequences, "data_fingerprint": fingerprint,
                         "vocabulary_sha256": vocab_sha}
        torch.manual_seed(cfg.seed)
        self.model = AttentionOnlyTransformer(len(self.vocabulary), cfg.seq_len, cfg.n_layers, cfg.init_std)
        self.tracker = (PathExactTracker(len(self.vocabulary), cfg.seq_len, cfg.lr, self.proc.device)
                        if cfg.path_exact else None)
        self.step, self.loss_sum, self.loss_count, self.logs = 0, 0.0, 0, []
        self.recorded_data_dir = str(cfg.data_dir)   # what checkpoints record (a caller may name the final folder)
        self._prepare_out_dir()
        self.model.to(self.proc.device)
        self.stats = statistics_of(self.tokens, cfg, len(self.vocabulary), self.proc)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr)
        self.ddp = None
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.proc.device.index] if self.proc.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)

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

    def log_point(self) -> dict:
        entry = {"epoch": self.step / self.steps_per_epoch, "step": self.step,
                 "loss": self.loss_sum / max(self.loss_count, 1), "lr": self.cfg.lr}
        entry.update(theory_entry(self.model, self.stats, self.cfg.lr, self.step))
        if self.tracker is not None:
            entry.update(path_entry(self.model, self.tracker.predictions()))
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
            save_tensors(path, tensors, meta)
            for old in checkpoint_paths(self.out_dir)[:-max(1, self.cfg.keep_checkpoints)]:
                old.unlink()
                old.with_suffix(".json").unlink(missing_ok=True)
        return path

    def run(self) -> dict:
        from common.progress import progress_bar
        cfg, proc = self.cfg, self.proc
        log_steps = self.log_steps | {self.stop_step}
        save_steps = event_steps(cfg.save_every, self.steps_per_epoch, self.total_steps) | {self.stop_step}
        if proc.main:
            write_json(self.out_dir / "config.json", dict(asdict(cfg), **self.run_meta, world_size=proc.world,
                                                          total_steps=self.total_steps,
                                                          data_dir=self.recorded_data_dir))
            self.log(self.plan())
        model = self.ddp or self.model
        no_sync = self.ddp.no_sync if self.ddp is not None else None
        bar = progress_bar(total=self.stop_step, initial=self.step, desc="training", disable=not (cfg.progress and proc.main),
                   dynamic_ncols=True)
        interrupt = InterruptFlag()
        with interrupt:
            self._train_until_stop(model, no_sync, log_steps, save_steps, bar, interrupt)
        bar.close()
        if interrupt.raised and self.step < self.stop_step:
            if proc.main:
                path = self.save_checkpoint()
                self.log(f"interrupted at step {self.step}; checkpoint {path} saved. Continue the run with:\n"
                         f"  {resume_command(self.out_dir)}")
            raise SystemExit(130)
        return self._finish()

    def plan(self) -> str:
        """The run in one line: sequences, batch, steps, τ = ηs at the end."""
        cfg = self.cfg
        length = (f"until τ = ηs reaches {cfg.tau:g}" if cfg.tau > 0 else f"{cfg.epochs} epochs")
        return (f"{len(self.tokens):,} training sequences of {cfg.seq_len + 1} tokens; global batch "
                f"{self.global_batch} → {self.steps_per_epoch:,} steps per epoch; {length}: "
                f"{self.stop_step:,} steps (τ = {cfg.lr * self.stop_step:g})"
                + (f", resuming at step {self.step:,}" if self.step else ""))

    def _train_until_stop(self, model, no_sync, log_steps, save_steps, bar, interrupt) -> None:
        cfg, proc = self.cfg, self.proc
        order, order_epoch, timing = None, None, None
        while self.step < self.stop_step:
            epoch, k = divmod(self.step, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(len(self.tokens), cfg.seed, epoch), epoch
            batches = list(self.micro_batches(order, k))
            started = time.perf_counter()
            loss = sgd_step(model, self.optimizer, batches, no_sync)
            if self.tracker is not None:   # the same global batch: every micro-batch, every rank
                self.tracker.step(batches, proc.all_reduce if proc.world > 1 else None)
            stop = interrupt.raised
            if proc.world > 1:   # ranks agree on the loss and on stopping (an interrupt reaches each rank)
                reduced = torch.tensor([loss, float(stop)], dtype=torch.float64, device=proc.device)
                proc.all_reduce(reduced)
                loss, stop = float(reduced[0]) / proc.world, bool(reduced[1] > 0)
            if not math.isfinite(loss):
                raise UserError(f"the loss became {loss} at step {self.step + 1}; lower --lr")
            self.step += 1
            if timing is None:   # the first step of this process: the estimate the user plans with
                timing = time.perf_counter() - started
                left = self.stop_step - self.step
                self.log(f"one step took {timing:.2f} s; the {left:,} steps left take about "
                         f"{_duration(timing * left)} (plus log points)")
            self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", epoch=f"{self.step / self.steps_per_epoch:.2f}", refresh=False)
            if self.step in log_steps:
                entry = self.log_point()
                bar.set_postfix(loss=f"{entry['loss']:.4f}", cos_W_O=f"{entry['W_O_B_bar']:.3f}", refresh=False)
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
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def resume_command(out_dir) -> str:
    """The command that continues the run in `out_dir` (its script and its folder; the rest comes
    from the run's config.json)."""
    import shlex
    import sys
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else "tiny_self_attn_natural.py"
    return f"python {script} --out_dir={shlex.quote(str(out_dir))} --resume=True"


def check_resumable(out_dir) -> None:
    """A run to resume must have a checkpoint: said before any data is read."""
    if not checkpoint_paths(out_dir):
        where = Path(out_dir)
        raise UserError(f"no checkpoint to resume from in {where / CHECKPOINT_DIR}"
                        + ("" if where.exists() else f" ({where} does not exist)")
                        + "; drop --resume to start a new run")


def too_few_sequences(n: int, cfg: TrainConfig, world: int) -> str:
    """The error for a data set smaller than one global batch, naming every lever in order of effect,
    with the count each would give where it can be computed from the story lengths (read here, on the
    error path only, not at every start)."""
    from common.corpus.tokenize import load_stories, sequence_counts, sequences_at_other_vocab_sizes, story_lengths
    lengths = story_lengths(load_stories(cfg.data_dir)[0])
    batch = cfg.batch_size * cfg.grad_accum * world
    shorter = [t for t in (128, 64, 32, 16) if t < cfg.seq_len]
    counts = sequence_counts(lengths, shorter, cfg.windows)
    levers = []
    for t in shorter:
        levers.append(f"--seq_len={t} ({counts[t]:,} sequences)")
        if counts[t] >= batch:
            break
    if not cfg.windows:
        windows = sequence_counts(lengths, cfg.seq_len, True)[cfg.seq_len]
        levers.append(f"--windows=True ({windows:,} at --seq_len={cfg.seq_len})")
    # the tokenizer counted the sequences other vocabulary sizes would give (summary.json)
    summary_path = Path(cfg.data_dir) / "summary.json"
    summary = read_json(summary_path, "tokenizer summary") if summary_path.exists() else {}
    larger = {v: count for v, count in sequences_at_other_vocab_sizes(summary, cfg.seq_len, cfg.windows).items()
              if count > n}
    levers.append("a larger --vocab_size in the tokenizer (keeps more stories"
                  + (": " + ", ".join(f"--vocab_size={v} gives {count:,}" for v, count in sorted(larger.items()))
                     if larger else "") + ")")
    levers.append(f"--batch_size={max(1, n // (cfg.grad_accum * world))} or lower" if n >= cfg.grad_accum * world
                  else "a smaller --batch_size")
    return (f"{n} training sequences are fewer than one global batch ({cfg.batch_size} × {cfg.grad_accum} "
            f"accumulation × {world} processes = {batch}); levers, most effective first: " + "; ".join(levers))


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
        lines.append(f"final loss {entry['loss']:.4f}; cosine with theory: {cosines}")
    lines += [f"{name}: {path}" for name, path in result.get("outputs", {}).items()]
    return lines


def load_run(checkpoint, data_dir: str = "", device: str = "cpu", progress: bool = False):
    """(model, tokens, vocabulary, statistics, metadata) of a checkpoint and the data it was trained
    on (its recorded `data_dir` unless another is given), refusing data that does not match it.
    The settings come from the run's own `config.json` (beside `checkpoints/`), else the sidecar."""
    tensors, meta = load_tensors(checkpoint)
    if "data_fingerprint" not in meta:
        raise UserError(f"{checkpoint} has no training metadata (its .json sidecar); it was not written "
                        f"by tiny_self_attn_*.py")
    config_path = Path(checkpoint).resolve().parent.parent / "config.json"
    saved = read_json(config_path, "run configuration") if config_path.exists() else meta
    cfg = TrainConfig.from_settings(dict(saved, data_dir=data_dir or meta["data_dir"], progress=progress,
                                         device=device))
    tokens, vocabulary, vocab_sha, fingerprint = load_training_data(cfg)
    if vocab_sha != meta["vocabulary_sha256"] or len(vocabulary) != meta["vocab_size"]:
        raise UserError(f"the vocabulary in {cfg.data_dir} does not match checkpoint {checkpoint}; "
                        f"pass the --data_dir it was trained on")
    if fingerprint != meta["data_fingerprint"]:
        raise UserError(f"the sequences in {cfg.data_dir} are not those checkpoint {checkpoint} was trained "
                        f"on; pass the --data_dir it was trained on")
    model = AttentionOnlyTransformer(len(vocabulary), cfg.seq_len, cfg.n_layers)
    model.load_state_dict(split_checkpoint(tensors)[0])
    proc = Processes(0, 1, resolve_device(device))
    model.to(proc.device)
    return model, tokens, vocabulary, statistics_of(tokens, cfg, len(vocabulary), proc), meta
