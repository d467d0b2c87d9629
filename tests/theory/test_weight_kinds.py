import pytest
import torch

from common.theory.alignment import named_weights, theory_entry
from common.theory.leading_terms import predicted_weights, theory_matrices
from common.theory.model import AttentionOnlyTransformer
from common.theory.statistics import compute_statistics
from common.theory.weight_kinds import KIND, MODEL_SIMILARITIES, WEIGHT_KINDS, log_key, parse_log_key


def test_release_log_keys_and_their_parse():
    assert log_key("W_O") == "W_O_B_bar"
    assert log_key("W", 2) == "layer_2_W_Q_bar"
    assert log_key("V", 0, rel_err=True) == "layer_0_V_B_bar_Phi_bar_rel_err"
    assert log_key("P", 1, reference="path") == "layer_1_P_path"
    parsed = parse_log_key("layer_2_W_Q_bar_rel_err")
    assert (parsed.kind, parsed.layer, parsed.reference, parsed.rel_err) == ("W", 2, "corpus", True)
    parsed = parse_log_key("W_O_path")
    assert (parsed.kind, parsed.layer, parsed.reference, parsed.rel_err) == ("W_O", None, "path", False)
    for bad in ("layer_0_W_O_B_bar", "W_Q_bar", "loss", "layer_1_W_B_bar", "layer_1_V_Q_bar", "epoch"):
        assert parse_log_key(bad) is None, bad


def test_every_key_round_trips():
    for kind in WEIGHT_KINDS:
        for layer in ([0, 3, 11] if kind.per_layer else [None]):
            for reference in ("corpus", "path"):
                for rel_err in (False, True):
                    parsed = parse_log_key(log_key(kind.name, layer, reference, rel_err))
                    assert (parsed.kind, parsed.layer, parsed.reference, parsed.rel_err) == \
                        (kind.name, layer, reference, rel_err)


def test_table_names_real_parameters_and_statistics(markov):
    x, y = markov(6, 8, 11)
    stats = compute_statistics(x, y, 11)
    model = AttentionOnlyTransformer(11, 8, 2)
    keys = [key for key, _, _ in named_weights(model)]
    assert keys == ["W_O_B_bar"] + [log_key(k, l) for l in range(2) for k in ("V", "W", "P")]
    for key, kind, weight in named_weights(model):
        assert weight.shape == getattr(stats, KIND[kind].statistic).shape
    assert {s.statistic for s in MODEL_SIMILARITIES} <= {k.statistic for k in WEIGHT_KINDS}
    assert theory_matrices(stats)["W"] is stats.attention_map


def test_theory_entry_on_weights_set_to_their_prediction(markov):
    x, y = markov(6, 8, 11)
    stats = compute_statistics(x, y, 11)
    model = AttentionOnlyTransformer(11, 8, 2).double()
    predicted = predicted_weights(stats, 0.5, 4)
    with torch.no_grad():
        for _, kind, weight in named_weights(model):
            weight.copy_(predicted[kind])
    entry = theory_entry(model, stats, 0.5, 4)
    for key, _, _ in named_weights(model):
        assert abs(entry[key] - 1) < 1e-12 and entry[f"{key}_rel_err"] < 1e-12
    # at step 1 only W_O has a non-zero prediction: the others' relative errors are undefined
    assert theory_entry(model, stats, 0.5, 1)["layer_0_W_Q_bar_rel_err"] is None


def test_variant_tables_and_model_variant():
    from common.io import UserError
    from common.theory.weight_kinds import IDENTITY_KINDS, VARIANTS, kinds_by_name, model_variant, weight_kinds
    assert VARIANTS == ("residual", "identity") and weight_kinds() is WEIGHT_KINDS
    assert {k.name: k.power for k in weight_kinds("residual")} == {"W_O": 1, "V": 2, "W": 4, "P": 4}
    assert {k.name: k.power for k in weight_kinds("identity")} == {"V": 1, "W": 2, "P": 2}
    identity = kinds_by_name("identity")
    assert identity["V"].statistic == "context" and identity["V"].transpose and weight_kinds("identity") is IDENTITY_KINDS
    # the log keys do not depend on the variant
    assert [k.log_stem for k in IDENTITY_KINDS] == [KIND[k.name].log_stem for k in IDENTITY_KINDS]
    # causality does not change the powers; the architecture does
    assert model_variant(AttentionOnlyTransformer(5, 4, 1)) == "residual"
    assert model_variant(AttentionOnlyTransformer(5, 4, 1, causal=False)) == "residual"
    assert model_variant(AttentionOnlyTransformer(5, 4, 1, causal=False, residual=False, output="identity")) == "identity"
    for variant in (dict(residual=False), dict(output="identity")):
        with pytest.raises(UserError, match="no leading-term theory"):
            model_variant(AttentionOnlyTransformer(5, 4, 1, **variant))
    with pytest.raises(UserError, match="unknown model variant"):
        weight_kinds("causal")


def test_kind_matrix_reads_the_statistic(markov):
    x, y = markov(6, 8, 11)
    stats = compute_statistics(x, y, 11)
    from common.theory.weight_kinds import kinds_by_name
    assert torch.equal(kinds_by_name("identity")["V"].matrix(stats), stats.context.T)
    assert kinds_by_name("residual")["V"].matrix(stats) is stats.value_map
