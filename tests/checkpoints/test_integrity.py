"""Per-tensor integrity of revisions (docs/theory.md §15) on hashes and on real tiny models: identical
revisions found earlier and later, partly shared ones named tensor by tensor, a reference hashed without
being compared."""
import torch

from common.checkpoints.integrity import (column_label, integrity_record, report_lines, tensor_sha256,
                                          weights_sha256)
from conftest import tiny_model


def hashes(**tensors):
    return dict(tensors)


def test_identical_earlier_and_later_and_shared_tensors():
    h = {
        "step0": hashes(a="1", b="2", c="3"),
        "step1": hashes(a="1", b="2", c="3"),          # = step0 (Pythia's step0/step1)
        "step2": hashes(a="9", b="8", c="7"),          # = main (an early branch serving the final weights)
        "step4": hashes(a="4", b="5", c="6"),
        "step8": hashes(a="4", b="5", c="77"),         # shares a, b with step4 (a shard of another checkpoint)
        "main": hashes(a="9", b="8", c="7"),
    }
    record = integrity_record(h, ["step8", "step4", "step2", "step1", "step0"], references=["main"])
    assert list(record) == ["step0", "step1", "step2", "step4", "step8", "main"]
    assert record["step0"]["identical_to"] == ["step1"] and "duplicate_of" not in record["step0"]
    assert record["step1"]["identical_to"] == ["step0"] and record["step1"]["duplicate_of"] == "step0"
    assert record["step2"]["identical_to"] == ["main"] and "duplicate_of" not in record["step2"]
    assert record["main"] == {"weights_sha256": record["step2"]["weights_sha256"], "reference": True,
                              "identical_to": ["step2"]}
    assert record["step8"]["shares_tensors_with"] == {"step4": ["a", "b"]}
    assert record["step4"]["shares_tensors_with"] == {"step8": ["a", "b"]}
    assert "shares_tensors_with" not in record["step0"]              # identical ones are not "shared"
    assert record["step0"]["weights_sha256"] == weights_sha256(h["step0"]) != weights_sha256(h["step4"])
    lines = report_lines(record)
    assert len(lines) == 6 and "\n" not in "".join(lines)
    assert "integrity: step2 holds the same weights as main" in lines[2]
    assert lines[4].startswith("integrity: step8 shares 2 tensors with step4 (a, b)")
    assert lines[5].startswith("integrity: the integrity reference main holds the same weights as step2")
    assert column_label("step1", record) == "step1 (= step0)"
    assert column_label("step2", record) == "step2 (= main)"
    assert column_label("step8", record) == "step8 (shares 2 tensors with step4)"
    assert column_label("step16", record) == "step16"
    # buffers (functions of the configuration) are not counted as shared
    assert "shares_tensors_with" not in integrity_record(h, ["step4", "step8"], buffers={"a", "b"})["step8"]


def test_tensor_hashes_see_every_tensor_dtype_and_byte():
    model = tiny_model("llama")
    first = tensor_sha256(model)
    assert first == tensor_sha256(tiny_model("llama")) and set(first) == set(model.state_dict())
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] += 1e-6
    changed = tensor_sha256(model)
    assert [n for n in first if first[n] != changed[n]] == ["model.layers.1.mlp.up_proj.weight"]
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] -= 1e-6
    assert all(a != b for a, b in zip(tensor_sha256(model.float()).values(), first.values()))   # dtype counts
