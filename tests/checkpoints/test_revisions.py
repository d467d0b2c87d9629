import pytest

from common.io import UserError
from common.checkpoints.revisions import (check_published_pythia_step, column_label, mark_duplicates, parse_revision,
                              revision_step, sort_revisions, split_revisions)


def test_every_family_convention_is_read_and_ordered_by_step():
    names = {"step512": 512, "checkpoint-1950": 1950, "ckpt_007": 7, "step-480000": 480000,
             "step1000-tokens4B": 1000, "stage1-step3000-tokens13B": 3000}
    for name, step in names.items():
        assert revision_step(name) == step, name
    assert parse_revision("step1000-tokens4B")[1].families == "OLMo v1"
    assert parse_revision("step-10")[1].template == "step-{N}"
    assert sort_revisions(["checkpoint-100", "checkpoint-20", "checkpoint-0", "checkpoint-20"]) == [
        "checkpoint-0", "checkpoint-20", "checkpoint-100"]                      # by number, not by text
    assert sort_revisions(["step20-tokens1B", "step3-tokens0B"]) == ["step3-tokens0B", "step20-tokens1B"]
    assert split_revisions("step0, step8,") == ["step0", "step8"] and split_revisions(["all"]) == ["all"]


@pytest.mark.parametrize("name", ["main", "step", "step-1x", "checkpoint10", "ckpt-3", "stage2-step1-tokens1B"])
def test_unknown_names_get_one_line(name):
    with pytest.raises(UserError, match=f"unknown revision '{name}': revisions are named step{{N}}, checkpoint-") as error:
        revision_step(name)
    assert "\n" not in str(error.value)


def test_pythia_published_steps():
    for name in ("step0", "step1", "step512", "step1000", "step143000"):
        check_published_pythia_step(name)
    for name in ("step3", "step1500", "step144000", "checkpoint-0"):
        with pytest.raises(UserError, match="Pythia checkpoints exist at"):
            check_published_pythia_step(name)


def test_duplicates_point_at_the_earliest_revision_with_the_same_weights():
    record = {"step2": {"weights_sha256": "a"}, "step0": {"weights_sha256": "a"}, "step1": {"weights_sha256": "a"},
              "step4": {"weights_sha256": "b"}, "step8": {"weights_sha256": "b"}, "step16": {"weights_sha256": "c"}}
    marked = mark_duplicates(record)
    assert list(marked) == ["step0", "step1", "step2", "step4", "step8", "step16"]
    assert {r: e.get("duplicate_of") for r, e in marked.items()} == {
        "step0": None, "step1": "step0", "step2": "step0", "step4": None, "step8": "step4", "step16": None}
    assert column_label("step2", marked) == "step2 (= step0)" and column_label("step16", marked) == "step16"
    assert column_label("step32", marked) == "step32"
