"""The result files of the checkpoint comparisons: written and read back, what they were computed from,
the integrity files, the folders of several models, leftovers of a killed run, and the heatmaps."""
import json

import pytest

from common.checkpoints.integrity import integrity_record
from common.checkpoints.results import (layer_folder, model_folder_name, model_result_dirs, plot_head_heatmaps,
                                        plot_head_results, plot_layer_heatmaps, plot_layer_results,
                                        read_head_results, read_layer_results, read_revision_record,
                                        read_tensor_hashes, remove_stale_temporaries, results_match,
                                        write_head_results, write_head_summary, write_layer_results,
                                        write_revision_record, write_tensor_hashes)
from common.io import UserError, write_json

PROVENANCE = {"weights_sha256": "abc", "settings": {"version": 2, "statistics": "k", "attention_bias": True}}


def _write_results(root, layers=(1,)):
    for step, scale in (("step0", 0.1), ("step16", 0.5), ("step2", 0.3)):
        write_layer_results(root, step, [{"attention": scale + 0.01 * l, "no_mlp": scale + 0.02 * l,
                                          "embedding": scale + 0.03 * l} for l in range(3)], PROVENANCE)
        for layer in layers:
            write_head_results(root, step, layer, [scale * h + layer for h in range(4)], PROVENANCE)


def test_written_files_read_back_in_the_release_layout(tmp_path):
    _write_results(tmp_path)
    summary = json.loads((tmp_path / "revision_step2" / "matrix_theoretical" / "cosine_similarity_summary_mids.json")
                         .read_text())
    assert summary == {f"layer_{l}": {"cosine_similarity": 0.3 + 0.02 * l} for l in range(3)}
    heads = json.loads((tmp_path / "revision_step2" / "layer_1" / "per_head_results.json").read_text())
    assert heads["head_2"] == {"cosine_similarity": pytest.approx(1.6), "head_idx": 2}
    layers = read_layer_results(tmp_path)
    assert list(layers["attention"]) == ["step0", "step2", "step16"]          # by step number
    assert layers["embedding"]["step16"] == pytest.approx([0.5, 0.53, 0.56])
    heads = read_head_results(tmp_path)
    assert list(heads) == [1] and heads[1]["step2"] == pytest.approx([1.0, 1.3, 1.6, 1.9])
    combined = json.loads(write_head_summary(tmp_path, 1).read_text())
    assert list(combined) == ["step0", "step2", "step16"] and combined["step16"]["head_3"]["head_idx"] == 3
    with pytest.raises(UserError, match="no pythia.py results"):
        read_layer_results(tmp_path / "revision_step0" / "layer_1")
    with pytest.raises(UserError, match="not found"):
        read_head_results(tmp_path / "missing")


def test_provenance_decides_whether_results_may_be_reused(tmp_path):
    _write_results(tmp_path)
    folder = layer_folder(tmp_path, "step2")
    assert json.loads((folder / "provenance.json").read_text()) == PROVENANCE
    assert results_match(folder, PROVENANCE)
    assert not results_match(folder, dict(PROVENANCE, weights_sha256="abd"))              # other weights
    assert not results_match(folder, dict(PROVENANCE, settings=dict(PROVENANCE["settings"], attention_bias=False)))
    assert not results_match(layer_folder(tmp_path, "step4"), PROVENANCE)                  # nothing there


def test_integrity_files_and_the_revision_record(tmp_path):
    tensors = {"step0": {"a": "1", "b": "2"}, "step1": {"a": "1", "b": "2"}, "main": {"a": "1", "b": "3"}}
    for revision, hashes in tensors.items():
        write_tensor_hashes(tmp_path, revision, hashes, buffers=["b"] if revision == "main" else [], weights_sha256="w")
    read = read_tensor_hashes(tmp_path)
    assert {r: h["tensors"] for r, h in read.items()} == tensors and read["main"]["buffers"] == ["b"]
    assert read_tensor_hashes(tmp_path / "nothing") == {} and read_revision_record(tmp_path) == {}
    record = integrity_record(tensors, ["step0", "step1"], ["main"])
    write_revision_record(tmp_path, record)
    assert read_revision_record(tmp_path) == record
    assert read_revision_record(tmp_path)["step1"]["duplicate_of"] == "step0"


def test_several_models_and_stale_temporaries(tmp_path):
    assert model_folder_name("EleutherAI/pythia-160m-seed3") == "pythia-160m-seed3"
    assert model_folder_name("out/seeds/seed2/") == "seed2"
    for seed in ("seed1", "seed2"):
        _write_results(tmp_path / "suite" / seed)
    (tmp_path / "suite" / "cache").mkdir()
    assert model_result_dirs(tmp_path / "suite") == [tmp_path / "suite" / "seed1", tmp_path / "suite" / "seed2"]
    assert model_result_dirs(tmp_path / "suite" / "seed1") == [tmp_path / "suite" / "seed1"]
    # what a run killed while writing leaves: hidden temporaries beside the files and folders
    one = tmp_path / "suite" / "seed1"
    leftovers = [one / ".revisions.json.x1.tmp", one / "integrity" / ".step2.json.x2.tmp",
                 one / "revision_step2" / ".matrix_theoretical.x3.tmp"]
    leftovers[0].write_text("{")
    leftovers[1].parent.mkdir()
    leftovers[1].write_text("{")
    leftovers[2].mkdir()
    (leftovers[2] / "cosine_similarity_summary.json").write_text("{")
    assert sorted(remove_stale_temporaries(one)) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers) and layer_folder(one, "step2").is_dir()


def test_heatmaps_one_grid_only_for_several_layers(tmp_path):
    _write_results(tmp_path / "one")
    written = plot_head_results(tmp_path / "one")
    assert sorted(p.name for p in written) == ["per_head_layer_1.pdf", "per_head_layer_1.png"]   # no duplicate grid
    _write_results(tmp_path / "two", layers=(0, 1))
    written = plot_head_results(tmp_path / "two")
    assert sorted(p.stem for p in written) == ["per_head_grid", "per_head_grid", "per_head_layer_0",
                                               "per_head_layer_0", "per_head_layer_1", "per_head_layer_1"]
    assert [p.name for p in plot_head_results(tmp_path / "two", layer=0)] == ["per_head_layer_0.png",
                                                                              "per_head_layer_0.pdf"]
    with pytest.raises(UserError, match="no per-head results of layer 5"):
        plot_head_results(tmp_path / "two", layer=5)
    write_json(tmp_path / "one" / "revisions.json", {"step2": {"weights_sha256": "a", "duplicate_of": "step0",
                                                               "identical_to": ["step0"]}})
    for paths in (plot_layer_results(tmp_path / "one"),
                  plot_layer_heatmaps(read_layer_results(tmp_path / "one"), tmp_path / "layers", {}),
                  plot_head_heatmaps(read_head_results(tmp_path / "one"), tmp_path / "heads", {})):
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
