import pytest
import torch

from common.checkpoints.architectures import architecture_for
from common.checkpoints.loading import Representations, single_token_representations
from common.checkpoints.comparison import TheoryTargets, attention_similarity, head_similarities, layer_similarities
from common.io import UserError, write_json
from common.theory.reference import naive_layer_similarities, naive_rsa, random_layer
from common.theory.similarity import RSATarget, normalize_rows, rsa_factored, rsa_to_target
from common.checkpoints.results import (plot_head_heatmaps, plot_layer_heatmaps, read_head_results,
                                       read_layer_results)
from conftest import tiny_model


def test_layer_similarities_equal_the_naive_formulation():
    attention_map, value_map, h_pre, h_mid, h_post, M = random_layer(60, 7, torch.Generator().manual_seed(0))
    targets = TheoryTargets({"attention_map": attention_map.clone(), "value_map": value_map.clone()}, torch.float64)
    naive = naive_layer_similarities(attention_map, value_map, h_pre, h_mid, h_post, M)
    assert attention_similarity(targets.attention, h_pre, M) == pytest.approx(naive["attention"], abs=1e-12)
    assert rsa_to_target(targets.value, h_mid) == pytest.approx(naive["no_mlp"], abs=1e-12)
    assert rsa_to_target(targets.value, h_post) == pytest.approx(naive["embedding"], abs=1e-12)
    assert min(abs(v) for v in naive.values()) > 0.05        # the instance is not trivially 0
    # the attention side is the row-centred bilinear form of H̃ = H_pre centred per token, query rows
    h = h_pre - h_pre.mean(dim=1, keepdim=True)
    transposed = naive_rsa(normalize_rows(attention_map), (h @ M @ h.T).T)
    assert abs(transposed - naive["attention"]) > 1e-3


@pytest.mark.parametrize("family", ["neox", "llama"])
def test_model_layers_and_heads_equal_brute_force(family):
    # LayerNorm (GPTNeoX): H̃ = H_pre centred per token; RMSNorm (Llama, 4 query heads over 2 key heads): H̃ = H_pre
    model = tiny_model(family, seed=2, layers=2, d=16, heads=4)
    reps = single_token_representations(model, torch.arange(40))
    g = torch.Generator().manual_seed(1)
    attention_map, value_map = torch.randn(40, 40, generator=g).double(), torch.randn(40, 40, generator=g).double()
    targets = TheoryTargets({"attention_map": attention_map.clone(), "value_map": value_map.clone()}, torch.float64)
    results = layer_similarities(model, reps, targets, "cpu")
    for index in range(2):
        weights = architecture_for(model.config).folded_query_key(model, index)
        h_pre = reps.pre(index).double()
        h = h_pre - h_pre.mean(dim=1, keepdim=True) if family == "neox" else h_pre
        naive = naive_layer_similarities(attention_map, value_map, h_pre, reps.mid[index].double(),
                                         reps.post[index].double(), weights.mean_matrix())
        naive["attention"] = naive_rsa(normalize_rows(attention_map), h @ weights.mean_matrix() @ h.T)
        for kind, value in naive.items():
            assert results[index][kind] == pytest.approx(value, abs=1e-10), (index, kind)
            assert -1 <= results[index][kind] <= 1
        heads = head_similarities(model, reps, targets.attention, index, "cpu")
        assert len(heads) == 4
        for head, value in enumerate(heads):
            M = weights.head_matrix(head)
            assert value == pytest.approx(naive_rsa(normalize_rows(attention_map), h @ M @ h.T), abs=1e-10)
    if family == "llama":   # centring the RMSNorm residual would be another number
        h_pre = reps.pre(0).double()
        centred = attention_similarity(targets.attention, h_pre, weights.mean_matrix(), centred=True)
        assert abs(centred - attention_similarity(targets.attention, h_pre, weights.mean_matrix(), False)) > 1e-4


def test_float32_targets_in_place_match_float64():
    attention_map, value_map, h_pre, h_mid, h_post, M = random_layer(300, 16, torch.Generator().manual_seed(3))
    exact = TheoryTargets({"attention_map": attention_map.clone(), "value_map": value_map.clone()}, torch.float64)
    single = attention_map.float()
    storage = single.data_ptr()
    approximate = TheoryTargets({"attention_map": single, "value_map": value_map.float()}, torch.float32)
    assert approximate.attention.centered.data_ptr() == storage       # prepared in place, no copy
    assert approximate.attention.centered.dtype == torch.float32
    for target32, target64, (left, right) in ((approximate.attention, exact.attention, (h_pre @ M, h_pre)),):
        assert rsa_factored(target32, left.float(), right.float()) == pytest.approx(
            rsa_factored(target64, left, right), abs=1e-5)
    assert rsa_to_target(approximate.value, h_mid.float()) == pytest.approx(rsa_to_target(exact.value, h_mid),
                                                                           abs=1e-5)
    # the blocked covariance norm equals the one-shot one
    c = torch.randn(50, 50, dtype=torch.float64)
    from common.theory.similarity import _gram_norm
    assert float(_gram_norm(c, block=7)) == pytest.approx(float((c @ c.T).norm()), rel=1e-12)
    assert RSATarget(c).norm == pytest.approx(float(_gram_norm(c - c.mean(1, keepdim=True))), rel=1e-12)


def _write_results(root):
    for step, scale in (("step0", 0.1), ("step16", 0.5), ("step2", 0.3)):
        folder = root / f"revision_{step}"
        for kind, name in (("attention", "attention_comparison_summary.json"),
                           ("no_mlp", "cosine_similarity_summary_mids.json"),
                           ("embedding", "cosine_similarity_summary.json")):
            write_json(folder / "matrix_theoretical" / name,
                       {f"layer_{l}": {"cosine_similarity": scale + 0.01 * l} for l in range(3)})
        write_json(folder / "layer_1" / "per_head_results.json",
                   {f"head_{h}": {"cosine_similarity": scale * h, "head_idx": h} for h in range(4)})


def test_reading_and_plotting_results(tmp_path):
    _write_results(tmp_path)
    layers = read_layer_results(tmp_path)
    assert list(layers["attention"]) == ["step0", "step2", "step16"]          # by step number
    assert layers["no_mlp"]["step16"] == pytest.approx([0.5, 0.51, 0.52])
    heads = read_head_results(tmp_path)
    assert list(heads) == [1] and list(heads[1]) == ["step0", "step2", "step16"]
    assert heads[1]["step2"] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    record = {"step2": {"weights_sha256": "a", "duplicate_of": "step0"}}
    for paths in (plot_layer_heatmaps(layers, tmp_path / "layers", record),
                  plot_head_heatmaps(heads, tmp_path / "heads", record)):
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(UserError, match="no pythia.py results"):
        read_layer_results(tmp_path / "revision_step0" / "layer_1")
    with pytest.raises(UserError, match="not found"):
        read_head_results(tmp_path / "missing")


def test_representations_pre_is_previous_post():
    reps = Representations(embedding=torch.zeros(2, 3), mid=[torch.ones(2, 3)] * 2, post=[torch.full((2, 3), 5.0)] * 2)
    assert reps.pre(0).sum() == 0 and reps.pre(1).sum() == 30 and reps.n_layers == 2
