"""The Tiny Stories trainer: theory tracking, logs and files, resume, accumulation, DDP, and the masked objective
with its model variants (docs/theory.md §3, §5, §7, §16)."""
import json
import math
import os
import re
import signal
import sys
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file

from common.io import UserError
from common.corpus.tokenize import load_stories, story_lengths, tokenize_natural, write_token_folder
from common.tiny.training import (RunCallback, TrainConfig, Trainer, checkpoint_paths, event_steps, final_summary,
                             micro_batch_indices, train)
from conftest import tiny_stories, two_gloo_processes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and two spinning threads on a busy 2-core machine cost 20×."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from conftest import natural_token_folder
    return natural_token_folder(tmp_path_factory.mktemp("tiny"), 96)


def config(data_dir, out_dir, **changes):
    base = dict(data_dir=str(data_dir), out_dir=str(out_dir), seq_len=16, n_layers=3, batch_size=8,
                grad_accum=1, epochs=2, lr=0.5, log_every=0.5, save_every=0.5, report_top=0, progress=False,
                device="cpu", seed=3)
    base.update(changes)
    return base


def weights(out_dir):
    return load_file(str(checkpoint_paths(out_dir)[-1]))


def test_end_to_end_log_keys_files_and_theory(data_dir, tmp_path):
    from common.tiny.explorer import ExplorerPage
    from common.tiny.report import AssociationReport
    result = train(config(data_dir, tmp_path / "run", batch_size=96, epochs=3, lr=0.01, log_every=1.0,
                          report_top=3, report_tokens=2, report_words="bird,dog,unicorn"),
                   callbacks=[AssociationReport(), ExplorerPage()])
    assert set(result["outputs"]) == {"association report", "association explorer"}
    out = tmp_path / "run"
    logs = json.loads((out / "training_logs.json").read_text())
    assert [e["step"] for e in logs] == [1, 2, 3] and result["step"] == 3
    expected = {"epoch", "step", "loss", "lr", "W_O_B_bar", "W_O_B_bar_rel_err"}
    for l in range(3):
        for key in (f"layer_{l}_W_Q_bar", f"layer_{l}_V_B_bar_Phi_bar", f"layer_{l}_P_p_bar"):
            expected |= {key, key + "_rel_err"}
    # the path-exact comparison (docs/theory.md §10), on by default
    from common.theory.weight_kinds import WEIGHT_KINDS, log_key
    for kind in WEIGHT_KINDS:
        for l in (range(3) if kind.per_layer else [None]):
            expected |= {log_key(kind.name, l, "path", rel_err) for rel_err in (False, True)}
    assert set(logs[0]) == expected
    # one full batch per step: the path-exact prediction is the §3 one
    assert logs[-1]["layer_1_V_path"] == pytest.approx(logs[-1]["layer_1_V_B_bar_Phi_bar"], abs=1e-6)
    assert logs[0]["layer_0_W_path_rel_err"] is None
    # full-batch steps from zero: W_O = ηB̄ exactly after one step; the rest follow the §3 polynomial
    assert logs[0]["W_O_B_bar"] > 0.99 and logs[0]["W_O_B_bar_rel_err"] < 1e-3
    assert logs[-1]["layer_2_V_B_bar_Phi_bar"] > 0.99 and logs[-1]["layer_0_W_Q_bar"] > 0.99
    assert logs[-1]["layer_0_V_B_bar_Phi_bar_rel_err"] < 0.01
    assert logs[0]["layer_0_W_Q_bar_rel_err"] is None      # the W prediction is 0 before step 3
    assert logs[0]["loss"] == pytest.approx(torch.log(torch.tensor(float(json.loads(
        (data_dir / "summary.json").read_text())["vocab_size"]))).item(), abs=1e-4)
    assert sorted(p.name for p in out.iterdir()) == ["associations.md", "checkpoints", "config.json",
                                                     "explorer.html", "training_logs.json"]
    meta = json.loads(checkpoint_paths(out)[-1].with_suffix(".json").read_text())
    assert meta["step"] == 3 and meta["lr"] == 0.01 and meta["vocab_size"] > 20 and meta["seq_len"] == 16
    report = (out / "associations.md").read_text()
    bird = report[report.index("## `bird`"):report.index("## `dog`")]
    assert "| B̄ | a → next token | `flew`" in bird and "| W_O | trained, as B̄ | `flew`" in bird
    assert "Not in the vocabulary: unicorn" in report


def test_schedule_helpers():
    assert event_steps(0.5, 10, 20) == {5, 10, 15, 20}
    assert event_steps(0.25, 3, 6) == {1, 2, 3, 4, 5, 6}          # several log points per step collapse
    assert event_steps(0, 10, 20) == {20} and event_steps(3.0, 10, 20) == {20}
    assert event_steps(0.3, 10, 20) == {3, 6, 9, 12, 15, 18, 20}
    order = torch.arange(100)
    # one process with batch 4 sees what two processes with batch 2 see, micro-step by micro-step
    one = micro_batch_indices(order, 1, 0, 0, 4, 2, 1).tolist()
    two = micro_batch_indices(order, 1, 0, 0, 2, 2, 2).tolist() + micro_batch_indices(order, 1, 0, 1, 2, 2, 2).tolist()
    assert one == two == [8, 9, 10, 11]


def test_resume_is_bit_identical(data_dir, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(config(data_dir, full, epochs=3, save_every=1.0))
    # interrupted after 7 steps (not at a log point nor at a checkpoint of the full run), then resumed
    train(config(data_dir, part, epochs=3, save_every=1.0, max_steps=7))
    # the step that stopped the run is logged (off the schedule of log points at 3, 6, 9, …)
    assert [e["step"] for e in json.loads((part / "training_logs.json").read_text())][-2:] == [6, 7]
    train(config(data_dir, part, epochs=3, save_every=1.0, resume=True))
    assert (part / "training_logs.json").read_text() == (full / "training_logs.json").read_text()
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_crash_drops_log_entries_past_the_checkpoint(data_dir, tmp_path):
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    train(config(data_dir, full, epochs=2, save_every=1.0))
    train(config(data_dir, crashed, epochs=2, save_every=1.0))
    newest = checkpoint_paths(crashed)[-1]           # as if the run died after logging, before saving
    newest.unlink()
    newest.with_suffix(".json").unlink()
    train(config(data_dir, crashed, epochs=2, save_every=1.0, resume=True))
    assert (crashed / "training_logs.json").read_text() == (full / "training_logs.json").read_text()
    a, b = weights(full), weights(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_configuration_and_fresh_runs_refuse_old_ones(data_dir, tmp_path):
    out = tmp_path / "run"
    train(config(data_dir, out, epochs=1))
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(UserError, match="another configuration .*lr"):
        train(config(data_dir, out, epochs=2, lr=0.1, resume=True))
    with pytest.raises(UserError, match="already holds a run"):
        train(config(data_dir, out, epochs=2))
    with pytest.raises(UserError, match="no checkpoint"):
        train(config(data_dir, tmp_path / "empty", resume=True))
    assert sorted(p.name for p in out.rglob("*")) == before and not (tmp_path / "empty").exists()


def test_gradient_accumulation_equals_the_larger_batch(data_dir, tmp_path):
    train(config(data_dir, tmp_path / "big", batch_size=8, grad_accum=1))
    train(config(data_dir, tmp_path / "accum", batch_size=2, grad_accum=4))
    a, b = weights(tmp_path / "big"), weights(tmp_path / "accum")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


class Recorder(RunCallback):
    """Records what the trainer hands its callbacks."""

    def __init__(self):
        self.entries, self.ends = [], 0

    def on_log(self, trainer, entry):
        self.entries.append(entry)

    def on_end(self, trainer):
        self.ends += 1
        return {"recorded": str(trainer.out_dir / "nothing")}


def test_callbacks_see_every_log_point_and_the_end_once(data_dir, tmp_path):
    recorder, lines = Recorder(), []
    result = train(config(data_dir, tmp_path / "run", epochs=1, log_every=0.25), callbacks=[recorder],
                   log=lines.append)
    logs = json.loads((tmp_path / "run" / "training_logs.json").read_text())
    assert recorder.entries == logs and recorder.ends == 1
    assert result["outputs"] == {"recorded": str(tmp_path / "run" / "nothing")}
    # the trainer writes only its own files: what else a run writes is the callbacks' business
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints", "config.json", "training_logs.json"]
    n = sum(length >= 17 for length in story_lengths(load_stories(data_dir)[0]))   # stories of T+1 tokens
    assert lines[0] == f"computing the corpus statistics of {n:,} sequences before training"
    assert lines[1].startswith(f"{n:,} training sequences of 17 tokens; global batch 8 → {n // 8:,} steps per epoch")
    assert lines[2].startswith(f"the corpus statistics of {n:,} sequences took")
    assert lines[3].startswith("one step took")


def test_tau_sets_the_number_of_steps(data_dir, tmp_path):
    """τ = ηs: --tau=1.3 at η = 0.5 trains ⌈1.3 / 0.5⌉ = 3 steps whatever --epochs says."""
    result = train(config(data_dir, tmp_path / "run", epochs=50, lr=0.5, tau=1.3, log_every=0))
    assert result["step"] == 3
    logs = json.loads((tmp_path / "run" / "training_logs.json").read_text())
    assert [e["step"] for e in logs] == [3]


def test_bad_training_inputs_leave_no_output(data_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="longer than every story"):
        Trainer(TrainConfig.from_settings(config(data_dir, out, seq_len=500)))
    lengths = story_lengths(load_stories(data_dir)[0])
    with pytest.raises(UserError, match="fewer than one global batch") as error:
        Trainer(TrainConfig.from_settings(config(data_dir, out, batch_size=10_000)))
    # every lever, with the count a shorter --seq_len or --windows would give (brute force over the stories)
    windows = int(sum(length // 17 for length in lengths))
    assert f"--windows=True ({windows:,} at --seq_len=16)" in str(error.value)
    assert "--batch_size=" in str(error.value)
    assert "--vocab_size" not in str(error.value)   # every story is kept already: no larger vocabulary helps
    with pytest.raises(UserError, match="no checkpoint to resume from") as error:   # before any data is read
        Trainer(TrainConfig.from_settings(config(tmp_path / "nothing", out, resume=True)))
    assert "does not exist" in str(error.value)
    with pytest.raises(UserError, match="data folder not found"):
        Trainer(TrainConfig.from_settings(config(tmp_path / "nothing", out)))
    assert not out.exists()


def test_resuming_a_finished_run_says_it_is_complete(data_dir, tmp_path):
    train(config(data_dir, tmp_path / "run", epochs=1))
    with pytest.raises(UserError, match="is complete"):
        train(config(data_dir, tmp_path / "run", epochs=1, resume=True))
    # a larger --epochs extends it
    assert train(config(data_dir, tmp_path / "run", epochs=2, resume=True))["step"] > 1


def test_two_gloo_processes_match_one(data_dir, tmp_path):
    """torchrun with 2 CPU processes (batch 4 each) against 1 process (batch 8): same global batch."""
    train(config(data_dir, tmp_path / "one", batch_size=8, epochs=2))
    run = two_gloo_processes(["tiny_self_attn_natural.py", f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'two'}",
                              "--seq_len=16", "--batch_size=4", "--epochs=2", "--lr=0.5", "--log_every=0.5",
                              "--save_every=0.5", "--report_top=0", "--progress=False", "--device=cpu", "--seed=3"],
                             fresh=tmp_path / "two")
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    one = json.loads((tmp_path / "one" / "training_logs.json").read_text())
    two = json.loads((tmp_path / "two" / "training_logs.json").read_text())
    assert [e["step"] for e in one] == [e["step"] for e in two]
    for e1, e2 in zip(one, two):
        assert e1["loss"] == pytest.approx(e2["loss"], abs=1e-6)
        assert e1["layer_1_W_Q_bar"] == pytest.approx(e2["layer_1_W_Q_bar"], abs=1e-6)


# -- the masked objective and the model variants (docs/theory.md §16) ------------------------------
MASKED = dict(objective="masked", n_layers=1)


def n_words(data_dir) -> int:
    return len(json.loads((Path(data_dir) / "vocabulary.json").read_text()))


def logs_of(out_dir) -> list:
    return json.loads((Path(out_dir) / "training_logs.json").read_text())


def test_masked_run_trains_with_MASK_appended_and_logs_the_theory(data_dir, tmp_path):
    from common.tiny.training import load_run
    from common.theory.weight_kinds import WEIGHT_KINDS, log_key
    out, lines, V = tmp_path / "run", [], n_words(data_dir)
    train(config(data_dir, out, batch_size=16, epochs=4, lr=1.0, log_every=0.25, **MASKED), log=lines.append)
    logs = logs_of(out)
    # the loss falls from ln(V + 1), the uniform guess over the words and MASK, by more than its noise
    first_step = train(config(data_dir, tmp_path / "one", max_steps=1, **MASKED))["log"]
    assert first_step["loss"] == pytest.approx(math.log(V + 1), abs=1e-5)
    assert logs[0]["loss"] > math.log(V + 1) - 0.01 and sum(e["loss"] for e in logs[-8:]) / 8 < math.log(V + 1) - 0.1
    # MASK is the last id of the model's vocabulary, recorded with the run; attention over all positions
    saved = json.loads((out / "config.json").read_text())
    assert (saved["objective"], saved["mask_token"], saved["model_vocab_size"], saved["attention"]) == \
           ("masked", "<mask>", V + 1, "all")
    w = weights(out)
    assert w["W_O"].shape == (V + 1, V + 1) and w["layers.0.P"].shape == (2 * 16 - 1,)
    assert any(line.startswith("note: masked objective") and f"<mask> (id {V})" in line for line in lines)
    # the same log keys as a causal run, path-exact included, holding the masked statistics' cosines
    expected = {"epoch", "step", "loss", "lr"}
    for kind in WEIGHT_KINDS:
        for layer in (range(1) if kind.per_layer else [None]):
            expected |= {log_key(kind.name, layer, reference, rel_err)
                         for reference in ("corpus", "path") for rel_err in (False, True)}
    assert set(logs[0]) == expected
    assert logs[-1]["W_O_B_bar"] > 0.9 and logs[-1]["layer_0_V_B_bar_Phi_bar"] > 0.9
    # the run reloads as what it is: its variant of the model, the vocabulary with MASK at the end
    model, _, vocabulary, stats, _ = load_run(checkpoint_paths(out)[-1])
    assert vocabulary[-1] == "<mask>" and len(vocabulary) == V + 1 and not model.is_causal
    assert all(torch.equal(model.state_dict()[k], w[k]) for k in model.state_dict())
    assert stats.position_map.shape == (2 * 16 - 1,)


def test_the_corruption_of_each_step_is_the_documented_function_of_seed_epoch_and_step(data_dir, tmp_path,
                                                                                     monkeypatch):
    import hashlib

    import common.tiny.training as training
    from common.theory.masking import MaskingScheme, corrupt
    seen, original = [], training.masked_step

    def recording(model, optimizer, micro_batches, n_selected, *args):
        seen.append(([[t.clone() for t in batch] for batch in micro_batches], n_selected))
        return original(model, optimizer, micro_batches, n_selected, *args)

    monkeypatch.setattr(training, "masked_step", recording)
    settings = config(data_dir, tmp_path / "run", batch_size=4, grad_accum=2, epochs=2, max_steps_per_epoch=3,
                      **MASKED)
    train(settings)
    tokens = training.load_training_data(TrainConfig.from_settings(settings))[0]
    V = n_words(data_dir)
    assert len(seen) == 6
    for step, (batches, n_selected) in enumerate(seen):
        epoch, k = divmod(step, 3)
        # the documented seed: BLAKE2b("mask:{seed}:{epoch}:{step in epoch}"), 8 bytes little-endian, top bit off
        digest = hashlib.blake2b(f"mask:3:{epoch}:{k}".encode(), digest_size=8).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        clean = tokens[training.epoch_order(len(tokens), 3, epoch)[k * 8:(k + 1) * 8], :16].long()
        x_tilde, selected = corrupt(clean, MaskingScheme(V, V), generator)
        drawn = [torch.cat(parts) for parts in zip(*batches)]    # the micro-batches, in global order
        assert torch.equal(drawn[0], x_tilde) and torch.equal(drawn[1], clean) and torch.equal(drawn[2], selected)
        assert n_selected == int(selected.sum()) > 0
    # dynamic masking: epoch 1 redraws (its first step's draw is not epoch 0's)
    assert not torch.equal(seen[0][0][0][2], seen[3][0][0][2])


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.5), ("adam", 0.01)])
def test_masked_resume_is_bit_identical(data_dir, tmp_path, optimizer, lr):
    """Stopped at step 7, inside the uniform-attention stage (9 steps), and resumed: the same log and tensors,
    Adam's moments included (W and P have none yet at the checkpoint: they start after the stage)."""
    full, part = tmp_path / "full", tmp_path / "part"
    settings = dict(objective="masked", n_layers=2, optimizer=optimizer, lr=lr, uniform_attention_steps=9,
                    epochs=3, save_every=1.0)
    train(config(data_dir, full, **settings))
    train(config(data_dir, part, max_steps=7, **settings))
    # Adam's state lies beside each checkpoint (which holds the model and path-exact state alone)
    states = sorted((part / "checkpoints").glob("optimizer_*.safetensors"))
    assert [p.name for p in states] == (["optimizer_00000007.safetensors"] if optimizer == "adam" else [])
    if optimizer == "adam":
        stopped = load_file(str(states[-1]))
        assert "layers.0.V.exp_avg" in stopped and "layers.0.W.exp_avg" not in stopped
        assert not any(k.startswith(("optimizer", "layers.0.V.exp")) for k in weights(part))
    train(config(data_dir, part, resume=True, **settings))
    assert (part / "training_logs.json").read_text() == (full / "training_logs.json").read_text()
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if optimizer == "adam":   # the same moments at the end, W's and P's included
        a, b = (load_file(str(sorted((o / "checkpoints").glob("optimizer_*.safetensors"))[-1])) for o in (full, part))
        assert "layers.1.W.exp_avg_sq" in a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        # the old checkpoints' states went with them (keep_checkpoints = 2)
        assert len(list((part / "checkpoints").glob("optimizer_*"))) == 4
        # a checkpoint whose state is lost is refused, not continued inexactly
        for state in (part / "checkpoints").glob("optimizer_*"):
            state.unlink()
        with pytest.raises(UserError, match="has no optimiser state beside it"):
            train(config(data_dir, part, resume=True, **dict(settings, epochs=4)))


@pytest.mark.parametrize("batch_size, grad_accum", [(4, 2), (2, 4)])
def test_masked_gradient_accumulation_equals_the_larger_batch(data_dir, tmp_path, batch_size, grad_accum):
    """The loss is the mean over the global batch's selected positions, not a mean of micro-batch means."""
    train(config(data_dir, tmp_path / "big", batch_size=8, grad_accum=1, **MASKED))
    train(config(data_dir, tmp_path / "accum", batch_size=batch_size, grad_accum=grad_accum, **MASKED))
    a, b = weights(tmp_path / "big"), weights(tmp_path / "accum")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    for big, accum in zip(logs_of(tmp_path / "big"), logs_of(tmp_path / "accum")):
        assert big["loss"] == pytest.approx(accum["loss"], abs=1e-6)


def test_masked_step_is_the_mean_over_the_selected_positions_and_an_empty_selection_is_no_nan():
    from common.theory.model import AttentionOnlyTransformer
    from common.tiny.training import masked_step
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(7, 5, 1, init_std=0.3, causal=False)
    x, y = torch.randint(7, (4, 5)), torch.randint(6, (4, 5))
    selected = torch.rand(4, 5) < 0.4
    selected[0, 0] = True
    # against autograd on the mean over every selected position of both micro-batches together
    reference = AttentionOnlyTransformer(7, 5, 1, causal=False)
    reference.load_state_dict(model.state_dict())
    expected = reference.loss(x, y, selected)
    expected.backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)   # lr 0: the gradients stay to be read
    loss = masked_step(model, optimizer, [(x[:1], y[:1], selected[:1]), (x[1:], y[1:], selected[1:])],
                       int(selected.sum()))
    assert loss == pytest.approx(expected.item(), abs=1e-6)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-7), name
    # a global batch without a selected position: loss 0, zero gradients, weights unchanged
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    none = torch.zeros_like(selected)
    assert masked_step(model, optimizer, [(x, y, none)], 0) == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not p.grad.any() for p in model.parameters())


def test_uniform_attention_stage_holds_W_and_P_at_zero_then_everything_trains(data_dir, tmp_path):
    out = tmp_path / "run"
    # from zero W would move at step 3 (after W_O and V): held at zero through step 4, even from a random start
    train(config(data_dir, tmp_path / "free", max_steps=4, n_layers=2))
    assert weights(tmp_path / "free")["layers.0.W"].abs().max() > 0
    for init_std in (0.0, 0.01):
        out = tmp_path / f"stage_{init_std}"
        settings = config(data_dir, out, n_layers=2, init_std=init_std, uniform_attention_steps=4, epochs=1)
        train(dict(settings, max_steps=4))
        w = weights(out)
        for l in range(2):
            assert not w[f"layers.{l}.W"].any() and not w[f"layers.{l}.P"].any()
            assert w[f"layers.{l}.V"].abs().max() > 0 and w["W_O"].abs().max() > 0
        # the path-exact recursion holds them at zero too, and the §3 prediction counts only the steps after
        # the stage (common/theory/leading_terms.py): none yet, where the plain sum would be η⁴(2 + 9)
        assert logs_of(out)[-1]["layer_0_W_path_rel_err"] is None
        last = logs_of(out)[-1]
        assert last["layer_0_W_Q_bar_rel_err"] is None and last["layer_1_P_p_bar_rel_err"] is None
        train(dict(settings, resume=True))
        assert all(weights(out)[f"layers.{l}.W"].abs().max() > 0 for l in range(2))


def test_identity_output_has_no_W_O_and_logs_the_variant(data_dir, tmp_path):
    out = tmp_path / "run"
    train(config(data_dir, out, residual=False, output="identity", **MASKED))
    assert "W_O" not in weights(out) and set(weights(out)) == {"layers.0.W", "layers.0.V", "layers.0.P",
                                                               *(f"path_exact.{k}" for k in
                                                                 ("output_t", "value", "attention", "position",
                                                                  "steps"))}
    entry = logs_of(out)[-1]
    assert "W_O_B_bar" not in entry and "W_O_path" not in entry
    # Li, Li & Risteski's variant: V lines up with Φ̄ₘᵀ from the first step (docs/theory.md §16)
    assert entry["layer_0_V_B_bar_Phi_bar"] > 0.9 and entry["layer_0_V_path"] > 0.9


def test_adam_turns_path_exact_off_and_says_so(data_dir, tmp_path):
    out, lines = tmp_path / "run", []
    train(config(data_dir, out, optimizer="adam", lr=0.01, epochs=1, **MASKED), log=lines.append)
    assert any(line.startswith("note: path_exact is off") for line in lines)
    assert json.loads((out / "config.json").read_text())["path_exact"] is False
    assert not any("path" in key for key in logs_of(out)[-1])


def test_every_combination_of_objective_attention_and_residual_trains(data_dir, tmp_path):
    """The ablation grid: a combination without leading-term theory still trains, and its log holds the loss."""
    for objective in ("causal", "masked"):
        for attention in ("causal", "all"):
            for residual, output in ((True, "trained"), (False, "identity"), (True, "identity")):
                out = tmp_path / f"{objective}_{attention}_{residual}_{output}"
                recorder = Recorder()
                result = train(config(data_dir, out, objective=objective, attention=attention, residual=residual,
                                      output=output, n_layers=1, epochs=1, report_top=0), callbacks=[recorder])
                entry = logs_of(out)[-1]
                assert math.isfinite(entry["loss"])
                theory = residual == (output == "trained") and (attention == "all" or
                                                                  (objective == "causal" and output == "trained"))
                assert ("layer_0_V_B_bar_Phi_bar" in entry) == theory, out.name
                assert ("no leading-term theory" in final_summary(result)[1]) != theory
                # a callback written for the causal model is left out of every other run
                default = (objective, attention, residual, output) == ("causal", "causal", True, "trained")
                assert recorder.ends == int(default), out.name


def test_an_old_data_folder_and_an_old_checkpoint_still_work(data_dir, tmp_path):
    import shutil

    from common.tiny.training import TRAJECTORY_DEFAULTS
    old = tmp_path / "old"
    shutil.copytree(data_dir, old)
    summary = json.loads((old / "summary.json").read_text())
    del summary["mask_token"]
    (old / "summary.json").write_text(json.dumps(summary))
    train(config(old, tmp_path / "masked", epochs=1, **MASKED))
    assert json.loads((tmp_path / "masked" / "config.json").read_text())["mask_token"] == "<mask>"
    # a checkpoint written before the masked settings existed resumes as the causal run it was
    out = tmp_path / "causal"
    train(config(data_dir, out, epochs=1))
    for sidecar in (out / "checkpoints").glob("*.json"):
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({k: v for k, v in meta.items() if k not in TRAJECTORY_DEFAULTS}))
    assert train(config(data_dir, out, epochs=2, resume=True))["step"] > 1
    # …and refuses to become a masked one
    with pytest.raises(UserError, match="another configuration \\(objective 'causal' there, 'masked' now\\)"):
        train(config(data_dir, out, epochs=3, resume=True, objective="masked"))


@pytest.mark.parametrize("changes, message", [
    (dict(objective="mlm"), "--objective must be one of causal, masked (got 'mlm')"),
    (dict(attention="bidirectional"), "--attention must be one of auto, causal, all"),
    (dict(output="tied"), "--output must be one of trained, identity"),
    (dict(optimizer="adamw"), "--optimizer must be one of sgd, adam"),
    (dict(objective="masked", mask_prob=0.0), "--mask_prob must lie strictly between 0 and 1"),
    (dict(objective="masked", mask_prob=1.0), "--mask_prob must lie strictly between 0 and 1"),
    (dict(objective="masked", mask_split=[0.8, 0.1, 0.2]), "--mask_split must sum to 1"),
    (dict(objective="masked", mask_split=[1.1, -0.1, 0.0]), "--mask_split must be three probabilities"),
    (dict(objective="masked", mask_split=[0.5, 0.5]), "--mask_split must be three probabilities"),
    (dict(objective="masked", mask_split=["a", "b", "c"]), "--mask_split must be three probabilities"),
    (dict(mask_prob=0.3), "--mask_prob and --mask_split apply to --objective=masked only"),
    (dict(mask_split=[1.0, 0.0, 0.0]), "--mask_prob and --mask_split apply to --objective=masked only"),
    (dict(residual=False), "--residual=False with --output=trained never trains from zero"),
    (dict(uniform_attention_steps=-1), "--uniform_attention_steps must be at least 0"),
    (dict(objective="masked", residual=False, output="identity", n_layers=2),
     "--residual=False with --n_layers=2 never trains from zero"),
])
def test_bad_objective_settings_get_one_line_and_no_output(data_dir, tmp_path, changes, message):
    import re
    with pytest.raises(UserError, match=re.escape(message)) as error:
        train(config(data_dir, tmp_path / "run", **changes))
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()


def test_a_zero_stack_without_residual_is_stationary():
    """Why the trainer refuses --residual=False with several layers from zero: every gradient is 0 there."""
    from common.theory.model import AttentionOnlyTransformer
    model = AttentionOnlyTransformer(6, 5, 2, causal=False, residual=False, output="identity")
    x = torch.randint(6, (4, 5), generator=torch.Generator().manual_seed(0))
    model.loss(x, x).backward()
    assert all(float(p.grad.abs().max()) == 0.0 for p in model.parameters())
    single = AttentionOnlyTransformer(6, 5, 1, causal=False, residual=False, output="identity")
    single.loss(x, x).backward()
    assert float(single.layers[0].V.grad.abs().max()) > 0   # one layer does train


def test_two_gloo_processes_match_one_masked(data_dir, tmp_path):
    """The masked loss under DDP: 2 processes of batch 4 against 1 of batch 8 (the same corruption, the
    same mean over the global batch's selected positions)."""
    train(config(data_dir, tmp_path / "one", batch_size=8, epochs=1, **MASKED))
    run = two_gloo_processes(["tiny_self_attn_natural.py", f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'two'}",
                              "--seq_len=16", "--batch_size=4", "--epochs=1", "--lr=0.5", "--log_every=0.5",
                              "--n_layers=1", "--save_every=0.5", "--report_top=0", "--progress=False",
                              "--device=cpu", "--seed=3", "--objective=masked"], fresh=tmp_path / "two")
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    for one, two in zip(logs_of(tmp_path / "one"), logs_of(tmp_path / "two")):
        assert one["loss"] == pytest.approx(two["loss"], abs=1e-6)
        assert one["layer_0_V_B_bar_Phi_bar"] == pytest.approx(two["layer_0_V_B_bar_Phi_bar"], abs=1e-6)


# every process's statistics under torchrun, each case of STATISTICS_CASES in turn (settings as JSON in argv)
STATISTICS_SCRIPT = """
import json, sys
import torch
from safetensors.torch import load_file, save_file
from common.device import setup_processes
from common.tiny.training import TrainConfig, statistics_of
tokens, out = load_file(sys.argv[1])["tokens"], sys.argv[2]
proc = setup_processes("cpu")
for i, settings in enumerate(json.loads(sys.argv[3])):
    stats = statistics_of(tokens, TrainConfig.from_settings(settings), int(tokens.max()) + 2, proc)
    save_file({k: v.contiguous() for k, v in stats.tensors().items() if v is not None}
              | {"n_positions": torch.tensor(float(stats.n_positions), dtype=torch.float64)},
              f"{out}/{proc.rank}_{i}.safetensors")
# leave together: a process that exits while the other still talks to it makes gloo abort the other
torch.distributed.barrier()
torch.distributed.destroy_process_group()
"""
STATISTICS_CASES = [dict(objective="masked", seq_len=9, mask_prob=0.3),
                    dict(objective="masked", seq_len=9, residual=False, output="identity"),
                    dict(objective="masked", seq_len=9, stats_sequences=13),
                    dict(objective="causal", attention="all", seq_len=9),
                    dict(objective="causal", seq_len=9)]


def test_two_gloo_processes_compute_the_statistics_of_one(tmp_path, markov):
    """The statistics of every objective and attention are sharded (each process every world-th sequence) and
    all-reduced: 2 gloo processes give those of 1, on both processes (25 sequences: uneven shards)."""
    from safetensors.torch import load_file, save_file
    from common.device import Processes
    from common.tiny.training import statistics_of
    x, y = markov(25, 9, 11, seed=5)
    tokens = torch.cat([x, y[:, -1:]], 1).int()
    save_file({"tokens": tokens}, str(tmp_path / "tokens.safetensors"))
    (tmp_path / "stats.py").write_text(STATISTICS_SCRIPT)
    cases = [dict(case, progress=False, device="cpu", seed=3) for case in STATISTICS_CASES]
    run = two_gloo_processes([str(tmp_path / "stats.py"), str(tmp_path / "tokens.safetensors"), str(tmp_path),
                              json.dumps(cases)])
    assert run.returncode == 0, run.stderr[-2000:]
    for i, settings in enumerate(cases):
        one = statistics_of(tokens, TrainConfig.from_settings(settings), 12, Processes(0, 1, torch.device("cpu")))
        expected = {k: v for k, v in one.tensors().items() if v is not None}
        assert expected["attention_map"].abs().max() > 0 and expected["position_map"].abs().max() > 0
        for rank in (0, 1):
            two = load_file(str(tmp_path / f"{rank}_{i}.safetensors"))
            assert float(two.pop("n_positions")) == pytest.approx(float(one.n_positions), rel=1e-12)
            assert set(two) == set(expected), settings
            for name, value in expected.items():
                scale = float(value.abs().max()) or 1.0
                assert float((two[name] - value).abs().max()) <= 1e-12 * scale, (settings, name)


# -- what a newcomer meets: Ctrl-C, the printed resume command, the plan and its warnings (issue 24) ----------
def interrupted(trainer, lines) -> int:
    """Run `trainer`, which a hook interrupts with Ctrl-C; the step of the checkpoint it saved."""
    with pytest.raises(SystemExit) as stop:
        trainer.run()
    assert stop.value.code == 130
    step = json.loads(checkpoint_paths(trainer.out_dir)[-1].with_suffix(".json").read_text())["step"]
    assert f"interrupted at step {step};" in "\n".join(lines)
    return step


def sigint():
    os.kill(os.getpid(), signal.SIGINT)


def calls(n: int, action):
    """A hook that runs `action` at its n-th call."""
    count = iter(range(1, 10**9))
    return lambda *args: action() if next(count) == n else None


@pytest.mark.parametrize("where", ["forward", "backward", "after the update"])
def test_ctrl_c_during_a_step_stops_at_once_and_the_resumed_run_equals_the_uninterrupted(data_dir, tmp_path, where):
    """Ctrl-C in step 7's forward or backward pass abandons that step (the optimiser has not touched a weight:
    the checkpoint holds step 6); after the optimiser's update it completes step 7.  Either way the run
    resumed from that checkpoint writes the uninterrupted run's log and weights."""
    full, part, lines = tmp_path / "full", tmp_path / "part", []
    train(config(data_dir, full))
    trainer = Trainer(TrainConfig.from_settings(config(data_dir, part)), log=lines.append)
    if where == "forward":
        trainer.model.register_forward_hook(calls(7, sigint))
    elif where == "backward":
        trainer.model.layers[1].V.register_hook(calls(7, sigint))
    else:
        trainer.optimizer.register_step_post_hook(calls(7, sigint))
    assert interrupted(trainer, lines) == (7 if where == "after the update" else 6)
    train(config(data_dir, part, resume=True))
    assert (part / "training_logs.json").read_text() == (full / "training_logs.json").read_text()
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_printed_resume_command_continues_the_interrupted_run_with_its_max_steps(data_dir, tmp_path):
    """A --max_steps=10 run stopped at step 6: the command it prints, run as printed, stops at step 10."""
    import runpy
    import shlex

    from common.config import override
    out, lines = tmp_path / "run", []
    trainer = Trainer(TrainConfig.from_settings(config(data_dir, out, max_steps=10)), log=lines.append)
    trainer.model.register_forward_hook(calls(7, sigint))
    assert interrupted(trainer, lines) == 6
    command = shlex.split("\n".join(lines).split("Continue the run with:")[1].strip())
    assert command[:2] == ["python", "tiny_self_attn_natural.py"] and "--max_steps=10" in command
    block = runpy.run_path(str(ROOT / "tiny_self_attn_natural.py"))   # the script's settings, as it parses them
    assert train(override(block, command[2:]))["step"] == 10
    assert [e["step"] for e in json.loads((out / "training_logs.json").read_text())][-1] == 10


def test_a_diverging_run_leaves_nothing_behind(data_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"the loss became nan at step \d+; lower --lr \(nothing of this run was kept"):
        train(config(data_dir, out, lr=50.0))
    assert not out.exists()
    (tmp_path / "mine").mkdir()   # a folder the user made stays, empty as it was
    with pytest.raises(UserError, match="lower --lr"):
        train(config(data_dir, tmp_path / "mine", lr=50.0))
    assert list((tmp_path / "mine").iterdir()) == []


def test_the_plan_reports_the_statistics_and_an_estimate_that_counts_steps_and_log_points(data_dir, tmp_path):
    lines = []
    train(config(data_dir, tmp_path / "run", epochs=1, log_every=0.25), log=lines.append)
    n = sum(length >= 17 for length in story_lengths(load_stories(data_dir)[0]))
    steps = n // 8
    assert lines[2].startswith(f"the corpus statistics of {n:,} sequences took ")
    estimate = next(line for line in lines if line.startswith("one step took"))
    logs_left = len(event_steps(0.25, steps, steps))    # every log point is at step 1 or later
    assert f"the {steps - 1:,} steps and {logs_left} log points left take about" in estimate
    step_s, log_s = (float(v) for v in re.findall(r"took ([\d.]+) s and a log point ([\d.]+) s", estimate)[0])
    total = float(re.findall(r"take about ([\d.]+) s", estimate)[0])
    assert total == pytest.approx((steps - 1) * step_s + logs_left * log_s, abs=0.05 + 0.005 * (steps + logs_left))
    lines = []   # one step left: no "1 steps"
    train(config(data_dir, tmp_path / "two", max_steps=2, log_every=0), log=lines.append)
    assert "the 1 step and 1 log point left take about" in "\n".join(lines)


def test_a_run_that_ends_far_before_the_early_regime_is_told_so_before_training(data_dir, tmp_path):
    """The warning's rule (TAU_WARNING_FRACTION): the run's final τ = ηs moves no logit by a tenth of a nat,
    τ · max|B̄| < 0.1, with B̄ the bigram statistic of the training sequences (brute force below)."""
    from common.tiny.training import TAU_WARNING_FRACTION
    tokens = torch.tensor([ids[:17] for ids in load_stories(data_dir)[0]["ids"] if len(ids) >= 17])
    V = len(json.loads((data_dir / "vocabulary.json").read_text()))
    x, y = tokens[:, :-1].flatten(), tokens[:, 1:].flatten()
    bigram = torch.zeros(V, V, dtype=torch.float64)   # B̄ = (1/n) Σ_t x_tᵀ (e_{y_t} − 1/V)
    bigram.index_put_((x, y), torch.ones(len(x), dtype=torch.float64), accumulate=True)
    bigram -= torch.bincount(x, minlength=V).double()[:, None] / V
    tau_one = 1 / float((bigram / len(x)).abs().max())
    steps = 2 * (len(tokens) // 8)
    slow, fine = 0.5 * TAU_WARNING_FRACTION * tau_one / steps, 2 * TAU_WARNING_FRACTION * tau_one / steps
    lines = []
    train(config(data_dir, tmp_path / "slow", lr=slow), log=lines.append)
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1 and f"τ = 1/max|B̄| = {tau_one:.3g}:" in warning[0]
    assert f"--tau={float(f'{tau_one / 2:.2g}'):g}" in warning[0] and "tiny_regime.py" in warning[0]
    assert lines.index(warning[0]) < [i for i, line in enumerate(lines) if line.startswith("one step took")][0]
    lines = []
    train(config(data_dir, tmp_path / "fine", lr=fine), log=lines.append)
    assert not any(line.startswith("warning:") for line in lines)
    # a run stopped early on purpose (tiny_regime.py's measuring runs) is not warned about
    from common.tiny.training import resolve_config
    lines = []
    Trainer(resolve_config(config(data_dir, tmp_path / "measuring", lr=slow)), log=lines.append,
            short_by_design=True).run()
    assert lines and not any(line.startswith("warning:") for line in lines)


def can_flush_subnormals() -> bool:
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)   # torch's own start state
    return supported


@pytest.mark.skipif(not can_flush_subnormals(), reason="this CPU cannot flush subnormal floats")
def test_flushing_subnormal_floats_changes_no_logged_figure(data_dir, tmp_path, monkeypatch):
    """From zero at a small η the products of V (∝ η²) and W, P (∝ η⁴) fall below float32's smallest normal
    number, where the CPU computes slowly; common.device.configure_numerics flushes them to zero.  At
    η = 1e-5 the flush does act here (the weights W, of order 1e-23, differ by 1e-38) and the log stays
    the same to 1e-12 (its figures differed in the 16th digit when measured)."""
    import common.tiny.training as training
    from common.device import configure_numerics
    train(config(data_dir, tmp_path / "flushed", lr=1e-5, epochs=1))
    monkeypatch.setattr(training, "configure_numerics",
                        lambda *args: configure_numerics(*args, flush_denormal=False))
    train(config(data_dir, tmp_path / "not", lr=1e-5, epochs=1))
    configure_numerics()
    a, b = weights(tmp_path / "flushed"), weights(tmp_path / "not")
    assert not all(torch.equal(a[k], b[k]) for k in a)            # subnormal numbers did occur
    flushed, not_flushed = logs_of(tmp_path / "flushed"), logs_of(tmp_path / "not")
    assert [e.keys() for e in flushed] == [e.keys() for e in not_flushed]
    for e1, e2 in zip(flushed, not_flushed):
        for key, value in e1.items():
            assert value == (None if e2[key] is None else pytest.approx(e2[key], rel=1e-12, abs=0)), key


def test_too_few_sequences_names_only_the_levers_that_give_more(tmp_path):
    """Counted by brute force over the stories: a shorter T or --windows is named only when it gives
    more sequences than now, a larger vocabulary only when the tokenizer dropped stories for it."""
    stories = datasets.Dataset.from_dict({"text": tiny_stories(96)})
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    write_token_folder(kept, *tokenize_natural(stories, vocab_size=10, keep_unknown=True, seq_len=16))
    write_token_folder(dropped, *tokenize_natural(stories, vocab_size=20, seq_len=16))
    lengths = story_lengths(load_stories(kept)[0])
    for seq_len in (20, 32):
        with pytest.raises(UserError, match="fewer than one global batch") as error:
            Trainer(TrainConfig.from_settings(config(kept, tmp_path / "run", seq_len=seq_len, batch_size=10_000)))
        n, at_16 = sum(length > seq_len for length in lengths), sum(length > 16 for length in lengths)
        windows = sum(length // (seq_len + 1) for length in lengths)
        assert (f"--seq_len=16 ({at_16:,} sequences)" in str(error.value)) == (at_16 > n)
        assert (f"--windows=True ({windows:,} at --seq_len={seq_len})" in str(error.value)) == (windows > n)
        assert "--vocab_size" not in str(error.value)   # --keep_unknown=True kept every story
    with pytest.raises(UserError, match="fewer than one global batch") as error:
        Trainer(TrainConfig.from_settings(config(dropped, tmp_path / "run", seq_len=16, batch_size=10_000)))
    larger = {row["vocab_size"]: row["first"] for row in json.loads((dropped / "summary.json").read_text())["sequences"]
              if row.get("other_vocabulary") and row["seq_len"] == 16 and row["vocab_size"] > 20}
    n = sum(length > 16 for length in story_lengths(load_stories(dropped)[0]))
    verb = "1 training sequence is" if n == 1 else f"{n} training sequences are"
    assert str(error.value).startswith(f"{verb} fewer")
    assert all((f"--vocab_size={v} gives {count:,}" in str(error.value)) == (count > n) for v, count in larger.items())
    assert any(count > n for count in larger.values()) and "1 sequences" not in str(error.value)
