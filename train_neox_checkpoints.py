"""Train a small causal LM of one supported family from scratch and save revisions at Pythia's schedule.

--architecture=neox (default): transformers' GPTNeoXForCausalLM with Pythia's choices — parallel
residual, rotary on a quarter of each head; gpt2: GPT2LMHeadModel (learned positions, Conv1D, sequential
residual); llama: LlamaForCausalLM (RMSNorm, rotary; grouped-query attention when --n_kv_heads is below
--n_heads); olmo: OlmoForCausalLM (OLMo v1, LayerNorm without parameters).  All with untied input/output
embeddings, AdamW (β = 0.9, 0.95, weight decay 0.01), linear warmup then cosine decay to 10%, on a local
corpus (default: the embedded synthetic stories). Documents are
joined with the end-of-text token and cut into windows of max_seq_len+1 tokens, shuffled every epoch.
The tokenizer is a `tokenizers` BPE trained on the corpus, unless --tokenizer names a local folder
with a tokenizer (e.g. Pythia's).  Revisions are saved at step 0, 1, 2, 4 … 512, then every 1000 steps,
named by the family's convention (docs/theory.md §12): {out_dir}/step{N} (neox), checkpoint-{N} (gpt2),
step-{N} (llama), step{N}-tokens{M}B (olmo) — each `save_pretrained` safetensors + tokenizer +
training_state.json, written under a temporary name and renamed: the folder layout pythia.py and
pythia_per_head.py read.

Single process, one device (a GPU when present); no distributed launch.

    python train_neox_checkpoints.py                                   # → out/neox_checkpoints
    python train_neox_checkpoints.py --dataset=stories.txt --max_steps=4000 --hidden_size=256 --n_layers=4
    python pythia.py --model_name=out/neox_checkpoints --revisions=all --dataset=synthetic --max_seq_len=64
    python train_neox_checkpoints.py --architecture=llama --n_kv_heads=2 --out_dir=out/llama_checkpoints
"""
import math

import torch
from common.progress import progress_bar

from common.checkpoints.architectures import BY_NAME
from common.config import override
from common.io import UserError, atomic_directory, exit_on_user_error, write_json
from common.checkpoints.revisions import PYTHIA_STEPS

architecture = "neox"        # neox (Pythia), gpt2, llama or olmo
dataset = "synthetic"        # synthetic, or a local .txt/.jsonl/.parquet/saved dataset
n_documents = 4000           # documents read from the corpus
tokenizer = ""               # a local tokenizer folder (e.g. Pythia's); empty: train a BPE on the corpus
vocab_size = 2000            # BPE vocabulary when training one
max_seq_len = 64             # T: training window
hidden_size = 64             # d_model
n_layers = 2
n_heads = 4
n_kv_heads = 0               # llama/olmo: key/value heads (grouped-query attention below n_heads); 0 = n_heads
batch_size = 16
learning_rate = 1e-3
warmup_steps = 10
weight_decay = 0.01
max_steps = 1000             # revisions are saved at step0, 1, 2, 4 … 512, then every 1000 up to this
device = "auto"
deterministic = True         # deterministic kernels: same data, settings, seed → same checkpoints (False: faster)
num_threads = 1              # CPU threads: a model this small trains fastest (and steadiest) on one; 0 = torch's default
seed = 0
out_dir = "out/neox_checkpoints"



def training_windows(tokenizer, texts, seq_len):
    """[N, T+1] windows cut from the documents joined by the end-of-text token."""
    eos = tokenizer.eos_token_id
    stream = []
    for ids in tokenizer(texts)["input_ids"]:
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


def save_revision(model, tok, name, state):
    with atomic_directory(f"{out_dir}/{name}") as folder:
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        write_json(folder / "training_state.json", state)


def main(config):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from common.device import configure_numerics, resolve_device
    from common.corpus.text import iter_texts, load_text_dataset
    from common.corpus.tokenize import causal_lm_tokenizer

    hf_logging.disable_progress_bar()
    if architecture not in BY_NAME:
        raise UserError(f"unknown --architecture={architecture!r}; use {', '.join(BY_NAME)}")
    family = BY_NAME[architecture]
    if n_kv_heads and (architecture not in ("llama", "olmo") or n_heads % n_kv_heads):
        raise UserError(f"--n_kv_heads={n_kv_heads} needs --architecture=llama or olmo and must divide "
                        f"--n_heads={n_heads}")
    if hidden_size % n_heads:
        raise UserError(f"--hidden_size={hidden_size} must be a multiple of --n_heads={n_heads}")
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
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
        tok = causal_lm_tokenizer(texts, vocab_size)
    windows = training_windows(tok, texts, max_seq_len)
    model_config = family.training_config(len(tok), hidden_size, n_layers, n_heads, n_kv_heads, max_seq_len,
                                          tok.eos_token_id)
    model = AutoModelForCausalLM.from_config(model_config).to(run_device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.95),
                                  weight_decay=weight_decay)
    schedule = [s for s in PYTHIA_STEPS if s <= max_steps]
    name = lambda step: family.revision_name(step, step * batch_size * max_seq_len)
    print(f"{family.family}: {len(windows)} windows of {max_seq_len + 1} tokens, vocabulary {len(tok)}, "
          f"{sum(p.numel() for p in model.parameters())} parameters; saving {len(schedule)} revisions to {out_dir}")
    generator = torch.Generator().manual_seed(seed)
    order, position, log = torch.randperm(len(windows), generator=generator), 0, []
    state = lambda step, loss: dict(config, step=step, loss=loss, n_windows=len(windows))
    save_revision(model, tok, name(0), state(0, None))
    progress = progress_bar(range(1, max_steps + 1), desc="training")
    for step in progress:
        if position + batch_size > len(order):
            order, position = torch.randperm(len(windows), generator=generator), 0
        batch = windows[order[position:position + batch_size]].to(run_device)
        position += batch_size
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step - 1)
        logits = model(input_ids=batch[:, :-1]).logits            # x = first T tokens, y = next T
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step in schedule:
            log.append({"step": step, "loss": loss.item()})
            save_revision(model, tok, name(step), state(step, loss.item()))
            write_json(f"{out_dir}/training_log.json", log)
    print(f"final loss {log[-1]['loss']:.3f}; revisions in {out_dir}")


if __name__ == "__main__":
    with exit_on_user_error():
        main(override(globals()))
