"""Shared test helpers: the one script runner, the Markov corpus and the tiny story corpus
(imported as `from conftest import …`; pytest puts tests/ on the path)."""
import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_script(script, *args, check=True, timeout=600):
    """Run one of the project's scripts (a path relative to the repository, or `-c code`) as a user would;
    `check`: assert it succeeded.
    One thread (tiny tensors on a busy 2-core machine: two spinning threads cost up to 20×) and the
    hub offline (an attempt fails at once instead of retrying)."""
    result = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def markov_tokens(n_seq, seq_len, vocab_size, seed=0):
    """Sequences from a random sparse Markov chain: (x, y) with y = x shifted by one token."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(vocab_size, vocab_size, generator=g) * 3
    probs = torch.softmax(logits, dim=1)
    tokens = torch.empty(n_seq, seq_len + 1, dtype=torch.long)
    tokens[:, 0] = torch.randint(vocab_size, (n_seq,), generator=g)
    for t in range(seq_len):
        tokens[:, t + 1] = torch.multinomial(probs[tokens[:, t]], 1, generator=g).squeeze(1)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


@pytest.fixture
def markov():
    return markov_tokens


# -- a very small story corpus for the Tiny Stories tests: ~30 word types, planted pairs
# (bird → flew, dog → barked, …), so tokenizing and training take milliseconds
PLANTED = {"bird": "flew", "dog": "barked", "cat": "purred", "fish": "swam"}
PLACES = ["tree", "park", "house", "pond"]
ADJECTIVES = ["big", "small", "red", "happy"]


def tiny_stories(n: int = 120, seed: int = 0) -> list:
    rng = random.Random(seed)
    stories = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.randint(3, 7)):
            animal = rng.choice(list(PLANTED))
            sentence = rng.choice([
                f"The {rng.choice(ADJECTIVES)} {animal} {PLANTED[animal]} to the {rng.choice(PLACES)}.",
                f"A {animal} {PLANTED[animal]}, and Tom saw it!",
                f"Tom and Sue went to the {rng.choice(PLACES)}. The {animal} {PLANTED[animal]}.",
            ])
            sentences.append(sentence)
        stories.append(" ".join(sentences))
    return stories


def two_gloo_processes(args, fresh=None, timeout=300):
    """`python -m torch.distributed.run --standalone --nproc_per_node=2 *args` with one CPU thread per process.
    A run whose process was aborted by SIGABRT (gloo, at the end of a run on a heavily loaded machine: seen in
    two of four loaded full-suite runs, never in isolation) is run once more from scratch, `fresh` (a folder it
    writes) removed first; any other failure counts at once.  The returned run's results are then checked."""
    import os
    import shutil
    import subprocess
    import sys
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)
    if run.returncode != 0 and "(SIGABRT)" in run.stderr:
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)
    return run


def natural_token_folder(parent, n_stories: int = 64):
    """`parent`/natural: the natural tokenizer's folder of `tiny_stories(n_stories)` (what the trainer reads)."""
    import datasets
    from common.corpus.tokenize import tokenize_natural, write_token_folder
    folder = parent / "natural"
    write_token_folder(folder, *tokenize_natural(datasets.Dataset.from_dict({"text": tiny_stories(n_stories)}),
                                                 vocab_size=3000))
    return folder


def write_txt(path, stories) -> str:
    path.write_text("\n\n".join(stories) + "\n", encoding="utf-8")
    return str(path)


VOCAB = 40   # vocabulary of the tiny random checkpoints


def tiny_model(family, seed=0, layers=2, d=24, heads=4, kv_heads=0, scale=0.3, vocab=VOCAB):
    """A random model of one family in float64, built offline from its config, with norms, biases and
    weights far from their defaults (a missing fold, a wrong centring or head layout shows up).  Llama
    gets grouped-query attention (4 query heads over 2 key heads) and attention biases."""
    from transformers import AutoModelForCausalLM

    from common.checkpoints.architectures import BY_NAME

    architecture = BY_NAME[family]
    kv_heads = kv_heads or (2 if family == "llama" else 0)
    config = architecture.training_config(vocab, d, layers, heads, kv_heads, 16, 0)
    if family == "llama":
        config.attention_bias = True
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_gain = p.dim() == 1 and ("norm" in name or "ln_" in name) and name.endswith("weight")
            p.normal_(1.0 if is_gain else 0.0, scale)
    return model.double()


def tiny_bert(seed=0, layers=2, d=24, heads=4, scale=0.3, vocab=VOCAB):
    """A random BERT masked LM (docs/theory.md §17) in float64, from the adapter's config, eager attention and
    no dropout, its LayerNorm gains near 1 and every other weight (biases included) far from its default."""
    from transformers import BertForMaskedLM

    from common.checkpoints.architectures import BY_NAME

    config = BY_NAME["bert"].training_config(vocab, d, layers, heads, 0, 16, 0)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(seed)
    model = BertForMaskedLM._from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "LayerNorm" in name and name.endswith("weight") else 0.0, scale)
    return model.double()


# -- topic bins by brute force (the topic measures' ground truth) --
from common.theory.topic_measures import BINS  # noqa: E402  (the bin names the measures report)

TOPICS = [frozenset({0}), frozenset({0}), frozenset({0, 1}), frozenset({1}), frozenset({1}), frozenset()]


def brute_bin(a: int, b: int, topics=TOPICS):
    if not topics[a] or not topics[b]:
        return None
    return "same_token" if a == b else "same_topic" if topics[a] & topics[b] else "different_topic"


def brute_means(values, topics=TOPICS) -> dict:
    sums = {name: [] for name in BINS}
    for a, b in itertools.product(range(len(topics)), repeat=2):
        if brute_bin(a, b, topics):
            sums[brute_bin(a, b, topics)].append(float(values[a][b]))
    return {name: sum(v) / len(v) if v else None for name, v in sums.items()}


# -- a Hugging Face cache laid out the way huggingface_hub writes it (hub offline: HF_HUB_OFFLINE=1) --
def write_hub_cache(cache, repo_id, revisions: dict) -> dict:
    """Lay `revisions` ({branch: folder written by save_pretrained}) into the cache `cache` as the hub
    writes a download: {cache}/models--{org}--{name}/blobs/{etag} (an LFS file's etag is its sha256, a
    git file's its blob sha1; equal files share one blob), snapshots/{commit}/{file} as relative
    symlinks into blobs/, refs/{branch} holding the commit (no newline).  Returns {branch: commit}."""
    import hashlib

    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    commits = {}
    for branch, folder in revisions.items():
        commit = hashlib.sha1(f"{repo_id}@{branch}".encode()).hexdigest()
        for path in sorted(Path(folder).iterdir()):
            data = path.read_bytes()
            lfs = path.suffix in (".safetensors", ".bin")
            etag = hashlib.sha256(data).hexdigest() if lfs else \
                hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            blob = repo / "blobs" / etag
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                blob.write_bytes(data)
            pointer = repo / "snapshots" / commit / path.name
            pointer.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, pointer.parent), pointer)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
        commits[branch] = commit
    return commits


# -- headless Chromium for the explorer pages' browser tests -------------------------------------
def chromium() -> str:
    """The Chromium executable; skips the test where there is none, fails instead when CI is set (CI must
    run the browser tests: .ci/run installs it)."""
    import shutil

    found = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(name)), None)
    if found is None:
        message = "headless Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the browser tests (.ci/run installs it)")
        pytest.skip(f"{message}: browser tests skipped")
    return found


def browse(page: Path, fragment: str, tmp_path: Path, screenshot: Path = None) -> str:
    """The rendered DOM of `page#fragment` (or a screenshot of it), asserting no console message and
    no script error on the page (the pages catch them in <div id="errors">)."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
               "--window-size=1400,1500"]
    command += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    result = subprocess.run(command + [f"{page.resolve().as_uri()}#{fragment}"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    if not screenshot:
        assert '<div id="errors"></div>' in result.stdout, "the page caught a script error"
    return result.stdout


@pytest.fixture(scope="module")
def browser():
    """The Chromium executable, found before an explorer test's run is trained (a skip costs nothing)."""
    return chromium()


def card(dom: str, key: str) -> str:
    """The inner HTML of an explorer page's card for map `key`, from the browser's DOM dump."""
    import re
    return re.search(rf'<section class="card \w+" data-map="{key}">(.*?)</section>', dom, re.S).group(1)


def partner_words(section: str) -> list:
    """The partners a card lists, in order."""
    import re
    return re.findall(r'data-partner="([^"]*)"', section)
