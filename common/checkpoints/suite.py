"""Comparison runs over a checkpoint suite (docs/theory.md §6, §15): one or several models (seeds) and their
revisions, checked for integrity, resumable, shared out across processes.

Order of work, so that bad input fails before anything is written:
  1. every model (`--model_name`: one, a comma list or org/name-seed{1..9}; revisions that are repositories of
     their own: google/multiberts-seed_{0..4}-step_{revision}, common/checkpoints/loading.py) and its revisions are resolved
     and checked (names, ranges, patterns, the integrity reference, family, agreement of the revisions;
     across models: the same architecture and the same tokenizer, or one UserError line);
  2. the statistics are computed once (the models share a tokenizer, hence the statistics) and cached: the
     causal ones of docs/theory.md §6, or for a masked LM (BERT) §16's masked statistics of its own
     tokenisation in expectation over the corruption (common/checkpoints/token_statistics.py);
  3. each (model, revision) is loaded, every tensor hashed (common/checkpoints/integrity.py, the hashes
     written to {model's output}/integrity/), compared and written; a revision whose results exist for
     the same weights and settings is skipped (`recompute=True` forces);
  4. at the end, per model: revisions.json (identical and partly shared revisions, one log line each
     when suspicious), the per-head summary; for several models the aggregate (common/checkpoints/aggregate.py).

Several processes (`torchrun --nproc_per_node=N pythia.py …`): the (model, revision) pairs are dealt out
round robin over the ranks, each rank writing its own revisions' files; rank 0 computes the statistics
first (the others read its cache) and writes step 4 after a barrier.  The files are those of a
one-process run.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from common.checkpoints.architectures import architecture_for, shape_of
from common.checkpoints.comparison import (ComparisonConfig, TheoryTargets, compute_dtype, head_similarities,
                                           layer_similarities, result_settings)
from common.checkpoints.integrity import buffer_names, integrity_record, report_lines, tensor_sha256, weights_sha256
from common.checkpoints.loading import CheckpointSource, expand_model_names, single_token_representations
from common.checkpoints.results import (head_folder, layer_folder, model_folder_name, read_head_values,
                                        read_layer_summaries, remove_stale_temporaries,
                                        read_tensor_hashes, results_match, write_head_results, write_head_summary,
                                        write_layer_results, write_revision_record, write_tensor_hashes)
from common.checkpoints.revisions import parse_revision
from common.io import UserError
from common.progress import progress_bar, write

SIMILARITY_NAMES = {"attention": "attention", "no_mlp": "no-MLP", "embedding": "embedding"}


@dataclass
class ModelPlan:
    """One model of the run: where it comes from, which revisions, where its results go."""
    name: str
    source: CheckpointSource
    revisions: list
    reference: Optional[str]
    output_dir: Path
    model_config: object
    tokenizer: object = None


@dataclass
class SuiteRun:
    plans: list
    results: dict                 # {model name: {revision: result}} of the revisions this process handled
    main: bool                    # the process that wrote the run's summaries
    written: list = field(default_factory=list)   # the summaries' paths (main process)


def plan_models(config: ComparisonConfig) -> list:
    """Step 1 of the module docstring: every model and revision resolved and checked."""
    from common.checkpoints.token_statistics import tokenizer_fingerprint

    names = expand_model_names(config.model_name)
    several = len(names) > 1
    folders = [model_folder_name(n) for n in names]
    if len(set(folders)) < len(folders):
        raise UserError(f"the models' names end alike ({', '.join(folders)}): each model's results go to "
                        f"{{output_dir}}/<last component of its name>; give them distinct last components")
    plans = []
    for name, folder in zip(names, folders):
        source = CheckpointSource(name)
        revisions = source.resolve(config.revisions)
        reference = source.check_reference(config.integrity_reference) if config.integrity_reference else None
        reference = None if reference in revisions else reference     # a compared revision is hashed anyway
        model_config = source.check_revisions(revisions)
        output_dir = Path(config.output_dir) / folder if several else Path(config.output_dir)
        plans.append(ModelPlan(name, source, revisions, reference, output_dir, model_config,
                               source.load_tokenizer(revisions[0])))
    first = plans[0]
    for plan in plans[1:]:
        for key, value in shape_of(plan.model_config).items():
            if value != shape_of(first.model_config)[key]:
                raise UserError(f"the models differ: {plan.name} has {key}={value} but {first.name} has "
                                f"{shape_of(first.model_config)[key]}; aggregate seeds of one architecture")
        if tokenizer_fingerprint(plan.tokenizer) != tokenizer_fingerprint(first.tokenizer):
            raise UserError(f"the models' tokenizers differ ({plan.name} and {first.name}): their statistics would "
                            f"differ; compare seeds that share a tokenizer, or run them one at a time")
    layers = first.model_config.num_hidden_layers
    if config.target_layer is not None and not 0 <= config.target_layer < layers:
        raise UserError(f"--target_layer={config.target_layer} is out of range: the model has {layers} layers "
                        f"(0 … {layers - 1})")
    return plans


def _layer_line(results: list) -> str:
    return " | ".join(f"layer {l}: " + ", ".join(f"{SIMILARITY_NAMES[k]} {r[k]:.3f}" for k in SIMILARITY_NAMES)
                      for l, r in enumerate(results))


def _head_line(layer: int, values: list) -> str:
    return f"layer {layer}: " + ", ".join(f"head {h} {v:.3f}" for h, v in enumerate(values))


def run_comparison(config: ComparisonConfig, heads: bool = False, log=write) -> SuiteRun:
    """pythia.py (`heads=False`: the three similarities of every layer) and pythia_per_head.py (`heads=True`:
    the attention similarity of each head of `config.target_layer`) over every model and revision."""
    from common.checkpoints.token_statistics import load_or_compute_statistics
    from common.device import configure_numerics, setup_processes

    if heads and config.target_layer is None:
        raise UserError("the per-head comparison needs --target_layer")
    plans = plan_models(config)
    processes = setup_processes(config.device)
    configure_numerics(config.deterministic)
    device, dtype = processes.device, compute_dtype(processes.device)
    rank_prefix = f"[rank {processes.rank}] " if processes.world > 1 else ""
    first = plans[0]
    if processes.main:
        for plan in plans:
            for path in remove_stale_temporaries(plan.output_dir):
                log(f"removed {path}, left by an interrupted run")
    else:
        torch.distributed.barrier()            # rank 0 computes the statistics first; the others read its cache
    statistics = load_or_compute_statistics(
        first.tokenizer, dataset=config.dataset, n_examples=config.n_examples, seq_len=config.max_seq_len,
        top_tokens=config.top_tokens, full_vocab_size=first.model_config.vocab_size, cache_dir=config.cache_dir,
        device=device, dtype=dtype, chunk_size=config.chunk_size, max_unknown_rate=config.max_unknown_rate,
        log=lambda m: log(rank_prefix + m), objective=architecture_for(first.model_config).objective)
    if processes.main and processes.world > 1:
        torch.distributed.barrier()
    settings = dict(result_settings(config, statistics.pop("cache_key"), dtype),
                    **({"target_layer": config.target_layer} if heads else {}))
    token_ids = statistics["token_ids"].cpu()
    targets = TheoryTargets(statistics, dtype, need_value=not heads, centre_tokens=config.centre_tokens)
    del statistics
    if getattr(first.model_config, "clip_qkv", None):
        log(f"note: clip_qkv={first.model_config.clip_qkv}: the per-token queries and keys are clipped as the model "
            f"clips them (docs/theory.md §12)")
    family = architecture_for(first.model_config).family
    for plan in plans:
        log(f"{rank_prefix}{family}: {plan.name}: {len(plan.revisions)} revision(s): {', '.join(plan.revisions)}"
            + (f"; integrity reference {plan.reference}" if plan.reference else "")
            + f"; |K| = {len(token_ids)}; device {device}" + (f"; {processes.world} processes" if processes.world > 1 else ""))

    items = [(plan, revision, False) for plan in plans for revision in plan.revisions]
    items += [(plan, plan.reference, True) for plan in plans if plan.reference]
    results = {plan.name: {} for plan in plans}
    for plan, revision, is_reference in progress_bar(items[processes.rank::processes.world], desc="revisions"):
        prefix = rank_prefix + (f"[{plan.output_dir.name}] " if len(plans) > 1 else "")
        model = plan.source.load_model(revision)
        hashes = tensor_sha256(model)                  # as loaded, before it moves to the device
        digest = weights_sha256(hashes)
        write_tensor_hashes(plan.output_dir, revision, hashes, buffer_names(model), digest)
        if is_reference:
            log(f"{prefix}{revision}: hashed as the integrity reference (sha256 {digest[:16]}…)")
            continue
        if int(token_ids.max()) >= model.config.vocab_size:
            raise UserError(f"revision {revision} has a vocabulary of {model.config.vocab_size} tokens but the "
                            f"statistics use token id {int(token_ids.max())}: the revisions do not share one vocabulary")
        provenance = {"weights_sha256": digest, "settings": settings}
        folder = (head_folder(plan.output_dir, revision, config.target_layer) if heads
                  else layer_folder(plan.output_dir, revision))
        if not config.recompute and results_match(folder, provenance):
            results[plan.name][revision] = read_head_values(folder) if heads else read_layer_summaries(folder)
            log(f"{prefix}{revision}: skipped, its results exist for the same weights and settings "
                f"(--recompute=True recomputes)")
            continue
        model = model.to(device)
        representations = single_token_representations(model, token_ids, config.batch_size, progress=True)
        if heads:
            value = head_similarities(model, representations, targets.attention, config.target_layer, device,
                                      config.attention_bias)
            write_head_results(plan.output_dir, revision, config.target_layer, value, provenance)
            log(f"{prefix}{revision}: {_head_line(config.target_layer, value)}")
        else:
            value = layer_similarities(model, representations, targets, device, config.attention_bias)
            write_layer_results(plan.output_dir, revision, value, provenance)
            log(f"{prefix}{revision}: {_layer_line(value)}")
        results[plan.name][revision] = value
        del model, representations

    if processes.world > 1:
        torch.distributed.barrier()                    # every rank's files are written
    run = SuiteRun(plans, results, processes.main)
    if processes.main:
        for plan in plans:
            run.written += summarise_model(plan, config, heads, log, prefix=f"[{plan.output_dir.name}] "
                                           if len(plans) > 1 else "")
        if len(plans) > 1 and not heads:
            from common.checkpoints.aggregate import write_aggregate

            run.written += write_aggregate(config.output_dir, {p.name: p.output_dir for p in plans})
    if processes.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return run


def summarise_model(plan: ModelPlan, config: ComparisonConfig, heads: bool, log, prefix: str = "") -> list:
    """revisions.json from every revision hashed into the model's folder (this run's and earlier ones'), one
    log line per suspicious revision, and the per-head summary."""
    hashed = read_tensor_hashes(plan.output_dir)
    references = [r for r in hashed if r == plan.reference or parse_revision(r) is None]
    compared = [r for r in hashed if r not in references]
    buffers = {name for h in hashed.values() for name in h.get("buffers", ())}
    record = integrity_record({r: h["tensors"] for r, h in hashed.items()}, compared, references, buffers)
    written = [write_revision_record(plan.output_dir, record)]
    for line in report_lines(record):
        log(prefix + line)
    if heads:
        written.append(write_head_summary(plan.output_dir, config.target_layer))
    return written
