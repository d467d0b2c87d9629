"""common/tiny/causal.py: projection removal, the ablation table, the attention summary, and the check of
every run with leading terms (masked objective, identity variant: docs/theory.md §16)."""
import copy
import math

import pytest
import torch

from common.io import UserError
from common.tiny.causal import (attention_summary, causal_ablation, evaluation_data, format_table, mean_loss,
                                remove_projection, run_objective)
from common.theory.model import AttentionOnlyTransformer
from common.theory.statistics import compute_statistics


def test_remove_projection_leaves_the_orthogonal_part():
    torch.manual_seed(0)
    a, m = torch.randn(5, 5, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64)
    rest = remove_projection(a, m)
    assert abs(float((rest * m).sum())) < 1e-12
    assert torch.allclose(a - rest, (a * m).sum() / (m * m).sum() * m, atol=1e-12)


def test_uniform_attention_summary_and_warning(markov):
    x, y = markov(8, 6, 7)
    tokens = torch.cat([x, y[:, -1:]], 1)
    model = AttentionOnlyTransformer(7, 6, 2).double()          # zero weights: attention exactly uniform
    summary = attention_summary(model, x, batch_size=3)
    for layer in summary:
        assert layer["logit_spread"] < 1e-12 and abs(layer["entropy_of_uniform"] - 1) < 1e-12
    result = causal_ablation(model, compute_statistics(x, y, 7), tokens)
    assert result["baseline_loss"] == mean_loss(model, x, y) and abs(result["baseline_loss"] - math.log(7)) < 1e-12
    table = format_table(result)
    assert "still near uniform" in table and "layer(s) 0, 1" in table


def test_attention_summary_against_brute_force(markov):
    x, y = markov(4, 5, 6)
    tokens = torch.cat([x, y[:, -1:]], 1)
    torch.manual_seed(1)
    model = AttentionOnlyTransformer(6, 5, 1, init_std=1.0).double()
    summary = attention_summary(model, x, batch_size=2)[0]
    A = model.attention_patterns(x)[0]
    spreads, entropies = [], []
    for b in range(4):
        for t in range(1, 5):
            row = A[b, t, :t + 1]
            logits = row.log()
            spreads.append(float(logits.std(unbiased=False)))
            entropies.append(float(-(row * row.log()).sum() / math.log(t + 1)))
    assert abs(summary["logit_spread"] - sum(spreads) / len(spreads)) < 1e-10
    assert abs(summary["entropy_of_uniform"] - sum(entropies) / len(entropies)) < 1e-10
    assert summary["entropy_of_uniform"] < 0.99
    assert "still near uniform" not in format_table({"baseline_loss": 1.0, "rows": [
        {"weight": "layer_0_W_Q_bar", "cosine": 0.5, "removed_fraction": 0.25, "loss": 1.0, "loss_change": 0.0}],
        "attention": [dict(summary, layer=0)]})


def test_attention_summary_over_all_positions_against_brute_force(markov):
    x, _ = markov(3, 5, 6)
    torch.manual_seed(2)
    model = AttentionOnlyTransformer(6, 5, 1, init_std=1.0, causal=False).double()
    summary = attention_summary(model, x, batch_size=2)[0]
    A = model.attention_patterns(x)[0]
    rows = [A[b, t] for b in range(3) for t in range(5)]            # every query sees all 5 keys, t = 0 included
    assert summary["logit_spread"] == pytest.approx(sum(float(r.log().std(unbiased=False)) for r in rows) / 15,
                                                    abs=1e-10)
    assert summary["entropy_of_uniform"] == pytest.approx(
        sum(float(-(r * r.log()).sum() / math.log(5)) for r in rows) / 15, abs=1e-10)


# -- the check of masked runs and of the identity variant (docs/theory.md §16) ------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from conftest import natural_token_folder
    return natural_token_folder(tmp_path_factory.mktemp("tiny"))


def trained_run(data_dir, out_dir, **changes):
    """A tiny run of the trainer; its newest checkpoint."""
    from common.tiny.training import checkpoint_paths, train
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dict(data_dir=str(data_dir), out_dir=str(out_dir), seq_len=12, n_layers=1, batch_size=8, epochs=2,
                   lr=1.0, log_every=1, save_every=1, report_top=0, progress=False, device="cpu", seed=3,
                   **changes))
    finally:
        torch.set_num_threads(threads)
    return checkpoint_paths(out_dir)[-1]


@pytest.mark.parametrize("variant", ["residual", "identity"])
def test_masked_run_checks_its_own_objective_and_variant_against_brute_force(data_dir, tmp_path, variant):
    """The baseline is the masked loss over the selected positions of the seeded corruption of the sequences'
    first T tokens (model.loss by hand), every ablation the loss of the model with that projection removed by
    hand from the variant's matrix (identity: no W_O, V on Φ̄ₘᵀ), under the same corruption."""
    from common.io import load_tensors
    from common.theory.masking import corrupt
    from common.tiny.training import load_run
    changes = dict(objective="masked", mask_prob=0.3)
    if variant == "identity":
        changes.update(residual=False, output="identity")
    checkpoint = trained_run(data_dir, tmp_path / "run", **changes)
    scheme = run_objective(load_tensors(checkpoint)[1])
    model, tokens, vocabulary, stats, meta = load_run(checkpoint)
    assert scheme.mask_id == len(vocabulary) - 1 == model.vocab_size - 1 and scheme.mask_prob == 0.3
    result = causal_ablation(model, stats, tokens, batch_size=5, scheme=scheme, corruption_seed=7)
    clean = tokens[:, :-1].long()
    x_tilde, selected = corrupt(clean, scheme, torch.Generator().manual_seed(7))
    assert result["selected_positions"] == int(selected.sum()) and result["objective"] == "masked"
    masked_loss = lambda m: float(m.loss(x_tilde, clean, selected).detach())
    assert result["baseline_loss"] == pytest.approx(masked_loss(model), rel=1e-6)
    # another seed is another corruption: another loss (the seed is used)
    assert abs(causal_ablation(model, stats, tokens, scheme=scheme, corruption_seed=8)["baseline_loss"]
               - result["baseline_loss"]) > 1e-6
    matrices = ({"V": stats.context.T, "W": stats.attention_map, "P": stats.position_map} if variant == "identity"
                else {"W_O": stats.bigram, "V": stats.value_map, "W": stats.attention_map, "P": stats.position_map})
    rows = {row["weight"]: row for row in result["rows"]}
    expected_keys = {"layer_0_V_B_bar_Phi_bar", "layer_0_W_Q_bar", "layer_0_P_p_bar"} | (
        set() if variant == "identity" else {"W_O_B_bar"})
    assert set(rows) == expected_keys
    for key, kind in (("layer_0_V_B_bar_Phi_bar", "V"), ("layer_0_W_Q_bar", "W"), ("layer_0_P_p_bar", "P"),
                      ("W_O_B_bar", "W_O")):
        if key not in rows:
            continue
        ablated = copy.deepcopy(model)
        weight = ablated.W_O if kind == "W_O" else getattr(ablated.layers[0], kind)
        a, m = weight.detach().double(), matrices[kind].double()
        cosine = float((a * m).sum() / (a.norm() * m.norm()))
        with torch.no_grad():
            weight.copy_((a - (a * m).sum() / (m * m).sum() * m).to(weight.dtype))
        assert rows[key]["cosine"] == pytest.approx(cosine, abs=1e-9)
        assert rows[key]["loss"] == pytest.approx(masked_loss(ablated), rel=1e-6)
        assert rows[key]["loss_change"] == pytest.approx(rows[key]["loss"] - result["baseline_loss"], abs=1e-12)
    # V carries what the model learnt: removing its theory direction raises the masked loss
    assert rows["layer_0_V_B_bar_Phi_bar"]["cosine"] > 0.5 and rows["layer_0_V_B_bar_Phi_bar"]["loss_change"] > 0
    assert "masked: mean over the selected positions of one corruption (seed 7)" in format_table(result)


def test_next_token_run_over_all_positions_uses_its_statistics(data_dir, tmp_path):
    from common.io import load_tensors
    from common.theory.masked_statistics import masked_statistics
    from common.tiny.training import load_run
    checkpoint = trained_run(data_dir, tmp_path / "run", attention="all")
    assert run_objective(load_tensors(checkpoint)[1]) is None
    model, tokens, _, stats, _ = load_run(checkpoint)
    x, y = tokens[:, :-1].long(), tokens[:, 1:].long()
    # the statistics are §16's with every position selected, not §2's causal ones
    direct = masked_statistics(x, y, torch.ones_like(x, dtype=torch.bool), model.vocab_size)
    assert torch.allclose(stats.attention_map, direct.attention_map, rtol=0, atol=1e-15)
    result = causal_ablation(model, stats, tokens, batch_size=7)
    assert result["objective"] == "next-token" and "corruption_seed" not in result
    assert result["baseline_loss"] == pytest.approx(float(model.loss(x, y).detach()), rel=1e-6)


@pytest.mark.parametrize("changes", [dict(objective="masked", attention="causal"),
                                     dict(residual=False, output="identity", attention="causal"),
                                     dict(output="identity")])
def test_a_run_without_leading_terms_is_refused_in_one_line(changes):
    meta = dict(vocab_size=10, **changes)
    with pytest.raises(UserError, match="no leading-term theory") as error:
        run_objective(meta)
    assert "\n" not in str(error.value)


def test_evaluation_data_of_a_masked_run_is_one_seeded_corruption_of_the_first_T_tokens():
    from common.theory.masking import MaskingScheme
    scheme = MaskingScheme(9, 9, mask_prob=0.5)
    tokens = torch.randint(9, (6, 8), generator=torch.Generator().manual_seed(0))
    x_tilde, targets, selected = evaluation_data(tokens, scheme, 4)
    again = evaluation_data(tokens, scheme, 4)
    assert all(torch.equal(a, b) for a, b in zip((x_tilde, targets, selected), again))
    assert torch.equal(targets, tokens[:, :-1]) and torch.equal(x_tilde[~selected], targets[~selected])
    assert (x_tilde[selected] == 9).any()
    with pytest.raises(UserError, match="selected no position"):
        evaluation_data(tokens[:1, :2], MaskingScheme(9, 9, mask_prob=1e-9), 0)
