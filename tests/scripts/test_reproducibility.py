"""docs/theory.md §13: with the default thread count (not one thread), two fresh runs write the same
bytes, and a run killed with SIGKILL (or stopped with Ctrl-C) right after its first checkpoint and
resumed with only `--out_dir --resume=True` ends with the log of the uninterrupted run."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_script

TRAIN = ["--seq_len=32", "--epochs=2", "--lr=0.05", "--n_layers=3", "--batch_size=32", "--log_every=0.25",
         "--save_every=0.5", "--report_top=0", "--progress=False", "--device=cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repro") / "data"
    run_script("tiny_tokenize_natural.py", "--data=synthetic", "--n_stories=1000", f"--out_dir={folder}")
    return folder


def train_command(data, out, *extra):
    return [sys.executable, "tiny_self_attn_natural.py", f"--data_dir={data}", f"--out_dir={out}", *TRAIN, *extra]


def default_threads_env():
    """The user's environment: no OMP_NUM_THREADS, so torch uses every core."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OMP_NUM_THREADS", None)
    return env


def run_to_end(data, out, *extra):
    done = subprocess.run(train_command(data, out, *extra), cwd=ROOT, capture_output=True, text=True,
                          env=default_threads_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def stop_after_first_checkpoint(data, out, sig, *extra):
    """Start a run and send `sig` as soon as its first checkpoint is in place."""
    process = subprocess.Popen(train_command(data, out, *extra), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=default_threads_env())
    deadline = time.time() + 600
    while not list((out / "checkpoints").glob("step_*.safetensors")):
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout + stderr


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("repro") / "full"
    run_to_end(data, out)
    return out


def test_two_fresh_runs_write_the_same_bytes(data, uninterrupted, tmp_path):
    run_to_end(data, tmp_path / "again")
    log = "training_logs.json"
    assert (tmp_path / "again" / log).read_bytes() == (uninterrupted / log).read_bytes()
    first, second = (sorted((o / "checkpoints").glob("*.safetensors")) for o in (uninterrupted, tmp_path / "again"))
    assert [p.name for p in first] == [p.name for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_sigkill_then_resume_equals_the_uninterrupted_run(data, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    code, _ = stop_after_first_checkpoint(data, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    # resume with nothing but the folder: every other setting comes from the run's config.json
    done = subprocess.run([sys.executable, "tiny_self_attn_natural.py", f"--out_dir={out}", "--resume=True",
                           "--progress=False"], cwd=ROOT, capture_output=True, text=True, env=default_threads_env(),
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "training_logs.json").read_bytes() == (uninterrupted / "training_logs.json").read_bytes()


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(data, uninterrupted, tmp_path):
    out = tmp_path / "interrupted"
    code, printed = stop_after_first_checkpoint(data, out, signal.SIGINT)
    assert code == 130 and "Traceback" not in printed, printed
    # the exact command that continues the run, as printed (with the settings of the interrupted
    # invocation that config.json does not carry over): run it whole
    command = shlex.split(printed.split("Continue the run with:")[1].strip().splitlines()[0])
    assert command == ["python", "tiny_self_attn_natural.py", f"--out_dir={out}", "--resume=True",
                       "--device=cpu", "--progress=False"], printed
    done = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True,
                          env=default_threads_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "training_logs.json").read_bytes() == (uninterrupted / "training_logs.json").read_bytes()


def test_an_explicit_setting_that_disagrees_with_the_run_is_refused(data, uninterrupted, tmp_path):
    done = subprocess.run([sys.executable, "tiny_self_attn_natural.py", f"--out_dir={uninterrupted}",
                           "--resume=True", "--seq_len=64"], cwd=ROOT, capture_output=True, text=True,
                          env=default_threads_env(), timeout=600)
    assert done.returncode == 2 and "another configuration (seq_len 32 there, 64 now)" in done.stderr


# a masked run (docs/theory.md §16) with Adam and a uniform-attention stage: its corruption is redrawn from
# (seed, epoch, step) and Adam's moments come back from the checkpoint
MASKED = ["--objective=masked", "--optimizer=adam", "--lr=0.01", "--uniform_attention_steps=3", "--n_layers=1"]


def test_a_masked_adam_run_killed_and_resumed_equals_the_uninterrupted_one(data, tmp_path):
    full, out = tmp_path / "full", tmp_path / "killed"
    run_to_end(data, full, *MASKED)
    code, _ = stop_after_first_checkpoint(data, out, signal.SIGKILL, *MASKED)
    assert code == -signal.SIGKILL
    done = subprocess.run([sys.executable, "tiny_self_attn_natural.py", f"--out_dir={out}", "--resume=True",
                           "--progress=False", "--report_top=0"], cwd=ROOT, capture_output=True, text=True,
                          env=default_threads_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "training_logs.json").read_bytes() == (full / "training_logs.json").read_bytes()
    # the last checkpoint and Adam's state beside it, byte for byte
    for pattern in ("step_*.safetensors", "optimizer_*.safetensors"):
        last = sorted((full / "checkpoints").glob(pattern))[-1]
        assert (out / "checkpoints" / last.name).read_bytes() == last.read_bytes()
