import pytest

from common.checkpoints.revisions import (check_published_pythia_step, parse_revision, revision_step,
                                          select_revisions, sort_revisions, split_revisions)
from common.io import UserError

AVAILABLE = ["step0", "step1", "step2", "step4", "step8", "step512", "step1000", "step143000", "main",
             "step1000-tokens4B"]


def test_every_family_convention_is_read_and_ordered_by_step():
    names = {"step512": 512, "checkpoint-1950": 1950, "ckpt_007": 7, "step-480000": 480000,
             "step1000-tokens4B": 1000, "stage1-step3000-tokens13B": 3000}
    for name, step in names.items():
        assert revision_step(name) == step, name
    assert parse_revision("step1000-tokens4B")[1].families == "OLMo v1"
    assert parse_revision("stage1-step10-tokens0B")[1].families == "OLMo-2"
    assert parse_revision("step-10")[1].template == "step-{N}"
    assert sort_revisions(["checkpoint-100", "checkpoint-20", "checkpoint-0", "checkpoint-20"]) == [
        "checkpoint-0", "checkpoint-20", "checkpoint-100"]                      # by number, not by text
    assert sort_revisions(["step20-tokens1B", "step3-tokens0B"]) == ["step3-tokens0B", "step20-tokens1B"]
    assert split_revisions("step0, step8,") == ["step0", "step8"] and split_revisions(["all"]) == ["all"]


def test_a_regular_expression_keeps_its_commas():
    assert split_revisions(r"step0..step4,re:^step\d{1,3}$") == ["step0..step4", r"re:^step\d{1,3}$"]
    assert select_revisions(r"re:^step\d{1,3}$", AVAILABLE, "here") == ["step0", "step1", "step2", "step4",
                                                                        "step8", "step512"]


def test_ranges_patterns_and_names_resolve_against_what_is_available():
    assert select_revisions("step0..step512", AVAILABLE, "here") == ["step0", "step1", "step2", "step4", "step8",
                                                                     "step512"]
    # a range keeps to its ends' convention: step1000-tokens4B (OLMo v1) is not a step{N} revision
    assert select_revisions("step4..step1000", AVAILABLE, "here") == ["step4", "step8", "step512", "step1000"]
    assert select_revisions(r"step2..step4,step143000,re:^step\d+000$", AVAILABLE, "here") == [
        "step2", "step4", "step1000", "step143000"]
    assert select_revisions("all", AVAILABLE, "here") == [r for r in sort_revisions(
        [a for a in AVAILABLE if a != "main"])]                             # `main` follows no step convention
    assert select_revisions("step8,step0", None, "the hub") == ["step0", "step8"]   # unlisted: names unchecked


@pytest.mark.parametrize("requested, message", [
    ("step3", "revision 'step3' not found in here"),
    ("step600..step900", "'step600..step900' matches no revision of here"),
    (r"re:^ckpt_\d+$", r"'re:\^ckpt_\\d\+\$' matches no revision"),
    ("re:step(", "not a valid regular expression"),
    ("step8..step2", "runs backwards"),
    ("step0..checkpoint-10", "both ends must follow one convention"),
    ("step0..latest", "both ends must be revision names"),
    ("", "no revision given"),
])
def test_bad_selections_get_one_line(requested, message):
    with pytest.raises(UserError, match=message) as error:
        select_revisions(requested, AVAILABLE, "here")
    assert "\n" not in str(error.value)


def test_patterns_need_a_list():
    with pytest.raises(UserError, match="needs the list of revisions of the hub"):
        select_revisions("step0..step8", None, "the hub")


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


def test_repository_revisions_of_masked_lm_suites_are_ordered_by_step():
    # MultiBERTs' -step_{N}k repositories (N thousand steps) and train_neox_checkpoints.py's -step_{N} folders
    assert revision_step("20k") == 20_000 and revision_step("2000k") == 2_000_000 and revision_step("512") == 512
    assert parse_revision("0k")[1].template == "{N}k" and parse_revision("7")[1].template == "{N}"
    assert sort_revisions(["200k", "0k", "1000k", "20k", "100k"]) == ["0k", "20k", "100k", "200k", "1000k"]
    assert sort_revisions(["16", "2", "1000", "0"]) == ["0", "2", "16", "1000"]
    available = ["0k", "20k", "40k", "100k", "2000k"]
    assert select_revisions("0k..40k", available, "here") == ["0k", "20k", "40k"]
    assert select_revisions("all", available, "here") == ["0k", "20k", "40k", "100k", "2000k"]
    assert select_revisions("2000k,0k", available, "here") == ["0k", "2000k"]
    with pytest.raises(UserError, match="'60k' not found"):
        select_revisions("60k", available, "here")
