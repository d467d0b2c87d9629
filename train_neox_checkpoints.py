"""Train a small LM of one supported family from scratch and save revisions at Pythia's schedule.

--architecture=neox (default): transformers' GPTNeoXForCausalLM with Pythia's choices — parallel
residual, rotary on a quarter of each head; gpt2: GPT2LMHeadModel (learned positions, Conv1D, sequential
residual); llama: LlamaForCausalLM (RMSNorm, rotary; grouped-query attention when --n_kv_heads is below
--n_heads); olmo: OLMo v1 (LayerNorm without parameters); olmo2 / olmo3: OLMo-2 / OLMo-3 (no norm before
attention, QK-norm, norms after attention and MLP); qwen2: Qwen2 (query/key/value biases); qwen3: Qwen3
(per-head QK-norm); bert: BertForMaskedLM, trained with the masked objective (docs/theory.md §16, §17: each
inner position selected with probability 0.15, shown as [MASK] 80%, itself 10%, a random word 10%, the
loss at the selected positions; windows are [CLS] + T−2 tokens + [SEP], the special positions never
selected), its decoder tied to the word embeddings as BERT's, and a lower-casing WordPiece tokenizer
(its vocabulary counted: every character and its ## continuation, then the most frequent words).
The causal families have untied input/output embeddings; all train with AdamW (β = 0.9, 0.95, weight decay 0.01),
linear warmup then cosine decay to 10%, on a local corpus (default: the embedded synthetic stories).
Documents are joined with the end-of-text token and cut into windows of max_seq_len+1 tokens, shuffled
every epoch.  The tokenizer is a `tokenizers` BPE trained on the corpus, unless --tokenizer names a local
folder with a tokenizer (e.g. Pythia's).  Revisions are saved at step 0, 1, 2, 4 … 512, then every 1000
steps, named by the family's convention (docs/theory.md §12): {out_dir}/step{N} (neox), checkpoint-{N}
(gpt2), step-{N} (llama, qwen2, qwen3), step{N}-tokens{M}B (olmo), stage1-step{N}-tokens{M}B (olmo2, olmo3)
— each `save_pretrained` safetensors + tokenizer + training_state.json, written under a temporary name
and renamed: the folder layout pythia.py and pythia_per_head.py read.  bert writes repository-style
folders as MultiBERTs names its repositories (google/multiberts-seed_{S}-step_{N}k): {out_dir}/seed{S}-step_{N}
for each seed S (--seed, or each of --seeds), read with --model_name='{out_dir}/seed{S}-step_{revision}'.

Several seeds (`--seeds=1,2,3`, like PolyPythias): the corpus and the tokenizer come from --seed and are
the same for every run; each run's initialisation and data order come from its own seed, written to
{out_dir}/seed{S}/ (a folder of revisions each), so that pythia.py --model_name={out_dir}/seed{1..3}
computes the statistics once and aggregates the seeds.

Single process, one device (a GPU when present); no distributed launch.

    python train_neox_checkpoints.py                                   # → out/neox_checkpoints
    python train_neox_checkpoints.py --dataset=stories.txt --max_steps=4000 --hidden_size=256 --n_layers=4
    python pythia.py --model_name=out/neox_checkpoints --revisions=all --dataset=synthetic --max_seq_len=64
    python train_neox_checkpoints.py --architecture=olmo2 --n_kv_heads=2 --out_dir=out/olmo2_checkpoints
    python train_neox_checkpoints.py --seeds=1,2,3 --max_steps=512 --out_dir=out/seeds
    python train_neox_checkpoints.py --architecture=bert --seeds=1,2 --max_steps=512 --out_dir=out/bert
    python pythia.py '--model_name=out/bert/seed{1..2}-step_{revision}' --revisions=all --dataset=synthetic
"""
import math
from pathlib import Path

import torch

from common.checkpoints.architectures import BY_NAME
from common.checkpoints.revisions import PYTHIA_STEPS
from common.config import override
from common.io import UserError, atomic_directory, exit_on_user_error, write_json
from common.progress import progress_bar

architecture = "neox"        # neox (Pythia), gpt2, llama, olmo, olmo2, olmo3, qwen2, qwen3 or bert (masked LM)
dataset = "synthetic"        # synthetic, or a local .txt/.jsonl/.parquet/saved dataset
n_documents = 4000           # documents read from the corpus
tokenizer = ""               # a local tokenizer folder (e.g. Pythia's); empty: train a BPE on the corpus
vocab_size = 2000            # BPE vocabulary when training one
max_seq_len = 64             # T: training window
hidden_size = 64             # d_model
n_layers = 2
n_heads = 4
n_kv_heads = 0               # key/value heads (grouped-query attention below n_heads; not neox, gpt2); 0 = n_heads
batch_size = 16
learning_rate = 1e-3
warmup_steps = 10
weight_decay = 0.01
max_steps = 1000             # revisions are saved at step0, 1, 2, 4 … 512, then every 1000 up to this
device = "auto"
deterministic = True         # deterministic kernels: same data, settings, seed → same checkpoints (False: faster)
num_threads = 1              # CPU threads: a model this small trains fastest (and steadiest) on one; 0 = torch's default
seed = 0                     # the corpus, the tokenizer, and (without --seeds) the run
seeds = ""                   # several runs, e.g. 1,2,3: one folder {out_dir}/seed{S} each (same corpus and tokenizer)
out_dir = "out/neox_checkpoints"


def training_windows(tok, texts, seq_len):
    """[N, T+1] windows cut from the documents joined by the end-of-text token."""
    eos = tok.eos_token_id
    stream = []
    for ids in tok(texts)["input_ids"]:
        stream += ids + ([eos] if eos is not None else [])
    n = (len(stream) - 1) // seq_len
    if n < 1:
        raise UserError(f"the corpus has {len(stream)} tokens: too few for one window of {seq_len + 1}")
    stream = torch.tensor(stream[: n * seq_len + 1])
    return torch.stack([stream[i * seq_len: i * seq_len + seq_len + 1] for i in range(n)])


def learning_rate_at(step):
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_revision(model, tok, folder, state):
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "training_state.json", state)


def run_seeds(repository_style: bool = False) -> list:
    """[(seed, folder)] of the runs to train: --seed into out_dir, or each of --seeds into out_dir/seed{S};
    repository-style folders (bert) all go into out_dir, named by their seed."""
    if not str(seeds).strip():
        return [(seed, Path(out_dir))]
    try:
        chosen = [int(s) for s in str(seeds).split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds={seeds!r}: give whole numbers separated by commas, e.g. --seeds=1,2,3") from None
    if not chosen or len(set(chosen)) != len(chosen):
        raise UserError(f"--seeds={seeds!r}: give distinct whole numbers, e.g. --seeds=1,2,3")
    return [(s, Path(out_dir) if repository_style else Path(out_dir) / f"seed{s}") for s in chosen]


def masked_windows(tok, texts, seq_len):
    """[N, T] windows [CLS] + T−2 tokens + [SEP] cut from the documents (without special tokens) joined by
    [SEP], as BERT's pretraining sequences."""
    if seq_len < 3:
        raise UserError(f"--max_seq_len={seq_len}: a masked LM's window holds [CLS], [SEP] and at least one token")
    stream = []
    for ids in tok(texts, add_special_tokens=False)["input_ids"]:
        stream += ids + [tok.sep_token_id]
    inner = seq_len - 2
    n = len(stream) // inner
    if n < 1:
        raise UserError(f"the corpus has {len(stream)} tokens: too few for one window of {inner}")
    body = torch.tensor(stream[: n * inner]).view(n, inner)
    return torch.cat([torch.full((n, 1), tok.cls_token_id), body, torch.full((n, 1), tok.sep_token_id)], dim=1)


def masked_loss(model, tok, batch, step_seed):
    """Cross-entropy at the selected inner positions of one batch, its corruption drawn from `step_seed`
    (common/theory/masking.py: random words uniform over the whole vocabulary, as BERT's)."""
    from common.theory.masking import MaskingScheme, corrupt

    scheme = MaskingScheme(mask_id=tok.mask_token_id, n_words=len(tok))
    inner, selected = corrupt(batch[:, 1:-1], scheme, torch.Generator().manual_seed(step_seed))
    if not selected.any():   # a batch with no selected position: select the first inner token of each window
        selected[:, 0] = True
    x_tilde = torch.cat([batch[:, :1], inner, batch[:, -1:]], dim=1)
    hidden = model.bert(input_ids=x_tilde).last_hidden_state[:, 1:-1]
    logits = model.cls(hidden[selected])          # the MLM head at the selected positions only (BERT's loss)
    return torch.nn.functional.cross_entropy(logits, batch[:, 1:-1][selected])


def train(family, tok, windows, run_seed, folder, run_device, config):
    """One run from its seed's initialisation and data order; revisions saved into `folder` (bert: the folders
    {folder}/seed{S}-step_{N})."""
    import transformers

    torch.manual_seed(run_seed)
    model_config = family.training_config(len(tok), hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len,
                                          tok.eos_token_id)
    model = getattr(transformers, family.model_class).from_config(model_config).to(run_device)
    masked = family.objective == "masked"
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.95),
                                  weight_decay=weight_decay)
    schedule = [s for s in PYTHIA_STEPS if s <= max_steps]
    name = lambda step: family.revision_name(step, step * batch_size * max_seq_len)
    if masked:   # repository-style: one folder per seed and revision, beside the others
        name = lambda step, plain=name: f"seed{run_seed}-step_{plain(step)}"
    log_file = folder / (f"seed{run_seed}-training_log.json" if masked else "training_log.json")
    print(f"{family.family}, seed {run_seed}: {len(windows)} windows of {windows.shape[1]} tokens, vocabulary "
          f"{len(tok)}, {sum(p.numel() for p in model.parameters())} parameters; saving {len(schedule)} revisions "
          f"to {folder}")
    generator = torch.Generator().manual_seed(run_seed)
    order, position, log = torch.randperm(len(windows), generator=generator), 0, []
    state = lambda step, loss: dict(config, seed=run_seed, step=step, loss=loss, n_windows=len(windows))
    save_revision(model, tok, folder / name(0), state(0, None))
    progress = progress_bar(range(1, max_steps + 1), desc=f"training (seed {run_seed})")
    for step in progress:
        if position + batch_size > len(order):
            order, position = torch.randperm(len(windows), generator=generator), 0
        batch = windows[order[position:position + batch_size]].to(run_device)
        position += batch_size
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step - 1)
        if masked:
            loss = masked_loss(model, tok, batch, run_seed * 1_000_003 + step)
        else:
            logits = model(input_ids=batch[:, :-1]).logits            # x = first T tokens, y = next T
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step in schedule:
            log.append({"step": step, "loss": loss.item()})
            save_revision(model, tok, folder / name(step), state(step, loss.item()))
            write_json(log_file, log)
    where = f"{folder}/seed{run_seed}-step_{{revision}}" if masked else folder
    print(f"seed {run_seed}: final loss {log[-1]['loss']:.3f}; revisions in {where}")


def main(config):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from common.corpus.text import iter_texts, load_text_dataset
    from common.device import configure_numerics, resolve_device

    hf_logging.disable_progress_bar()
    if architecture not in BY_NAME:
        raise UserError(f"unknown --architecture={architecture!r}; use {', '.join(BY_NAME)}")
    family = BY_NAME[architecture]
    if n_kv_heads and (architecture in ("neox", "gpt2", "bert") or n_heads % n_kv_heads):
        raise UserError(f"--n_kv_heads={n_kv_heads} needs an architecture with grouped-query attention (not neox, "
                        f"gpt2 or bert) and must divide --n_heads={n_heads}")
    if hidden_size % n_heads:
        raise UserError(f"--hidden_size={hidden_size} must be a multiple of --n_heads={n_heads}")
    runs = run_seeds(repository_style=family.objective == "masked")
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    run_device = resolve_device(device)
    configure_numerics(deterministic)
    texts = list(iter_texts(load_text_dataset(dataset, n_synthetic=n_documents, seed=seed), n_documents))
    if not texts:
        raise UserError(f"the corpus {dataset} is empty")
    if tokenizer:
        try:
            tok = AutoTokenizer.from_pretrained(tokenizer)
        except Exception as error:
            raise UserError(f"could not load a tokenizer from {tokenizer} ({error.__class__.__name__})") from None
    else:
        tok = family.training_tokenizer(texts, vocab_size)
    if family.objective == "masked" and tok.mask_token_id is None:
        raise UserError(f"the tokenizer of {tokenizer} has no mask token: a masked LM needs one")
    windows = (masked_windows if family.objective == "masked" else training_windows)(tok, texts, max_seq_len)
    for run_seed, folder in runs:
        train(family, tok, windows, run_seed, folder, run_device, config)


if __name__ == "__main__":
    with exit_on_user_error():
        main({k: v for k, v in override(globals()).items() if k != "_explicit"})
