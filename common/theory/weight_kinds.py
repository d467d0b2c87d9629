"""The one vocabulary of weight kinds (docs/theory.md §3, §5, §6): each trained weight, the corpus
statistic it lines up with early in training, its symbol and the stem of its log keys.  The log, the
association report, the plots, the demo and the Pythia figure titles all read these tables; adding a
kind is one row here.

Model variants (docs/theory.md §16): the leading powers and statistics depend on the architecture, not
on causality.  "residual" (the model of §1, causal or over all positions): `WEIGHT_KINDS`.  "identity"
(no residual, W_O frozen to the identity: Li, Li & Risteski 2023): `IDENTITY_KINDS`, with no W_O, V at τ
with Φ̄ᵀ and W, P at τ² with the Q̄', p̄' of the attention source G = Φ̄ᵀ.  `model_variant(model)` names a
model's variant, `weight_kinds(variant)` gives its table; the log keys are the same in every variant.

Log keys (readable by the release's plotting convention, docs/theory.md §5):
    W_O_B_bar, layer_{l}_W_Q_bar, layer_{l}_V_B_bar_Phi_bar, layer_{l}_P_p_bar   cosine with the statistic
    … + `_rel_err`                                                                relative error to §3
    W_O_path, layer_{l}_W_path, …  (+ `_rel_err`)                                 against the path-exact
                                                                                  prediction (§10)
"""
import re
from dataclasses import dataclass

from common.io import UserError


@dataclass(frozen=True)
class WeightKind:
    name: str        # parameter name in common/theory/model.py (W_O on the model, the others per layer)
    statistic: str   # the CorpusStatistics field it lines up with (common/theory/statistics.py)
    symbol: str      # that statistic's symbol, in plain Unicode
    tex: str         # the same symbol for matplotlib's mathtext
    log_stem: str    # log-key suffix naming the statistic (the release's convention)
    role: str        # what the weight does in the model
    per_layer: bool  # one per layer (V, W, P) or one for the model (W_O)
    power: int       # its leading power of τ = ηs: the first non-zero Taylor coefficient (docs/theory.md §3)
    transpose: bool = False   # the statistic's transpose is the weight's shape (Φ̄ᵀ in the identity variant)

    def matrix(self, stats):
        """The weight's theory-side matrix from CorpusStatistics `stats`."""
        value = getattr(stats, self.statistic)
        return value.T if self.transpose else value


# Order: the order of the leading terms (W_O first, then V, then W and P).
WEIGHT_KINDS = (
    WeightKind("W_O", "bigram", "B̄", r"\bar B", "B_bar", "output", False, 1),
    WeightKind("V", "value_map", "(B̄Φ̄)ᵀ", r"(\bar B \bar\Phi)^\top", "B_bar_Phi_bar", "value", True, 2),
    WeightKind("W", "attention_map", "Q̄", r"\bar Q", "Q_bar", "attention", True, 4),
    WeightKind("P", "position_map", "p̄", r"\bar p", "p_bar", "position", True, 4),
)
KIND = {kind.name: kind for kind in WEIGHT_KINDS}

# Li, Li & Risteski 2023's variant (docs/theory.md §16): W_O is frozen, so V learns first, from the context
# map alone, and W, P second; the statistics are those of variant="identity" (G = Φ̄ᵀ inside Q̄', p̄').  The
# log stems stay the causal ones: layer_{l}_V_B_bar_Phi_bar holds cos(V, Φ̄ᵀ) here.
IDENTITY_KINDS = (
    WeightKind("V", "context", "Φ̄ᵀ", r"\bar\Phi^\top", "B_bar_Phi_bar", "value", True, 1, transpose=True),
    WeightKind("W", "attention_map", "Q̄'", r"\bar Q'", "Q_bar", "attention", True, 2),
    WeightKind("P", "position_map", "p̄'", r"\bar p'", "p_bar", "position", True, 2),
)
VARIANT_KINDS = {"residual": WEIGHT_KINDS, "identity": IDENTITY_KINDS}
VARIANTS = tuple(VARIANT_KINDS)


def weight_kinds(variant: str = "residual") -> tuple:
    """The weight kinds of a model variant ("residual" or "identity"), in the order of their leading terms."""
    if variant not in VARIANT_KINDS:
        raise UserError(f"unknown model variant {variant!r}: choose one of {VARIANTS}")
    return VARIANT_KINDS[variant]


def kinds_by_name(variant: str = "residual") -> dict:
    """{name: WeightKind} of a variant (`KIND` for the residual one)."""
    return {kind.name: kind for kind in weight_kinds(variant)}


def model_variant(model) -> str:
    """The variant of a common.theory.model.AttentionOnlyTransformer: "residual" (residual stream and a
    trained W_O, causal or not) or "identity" (no residual, W_O frozen to the identity).  The other two
    combinations have no leading-term table (from zero, without the residual a trained W_O and V keep each
    other at zero; with it, identity logits start from the one-hot input, not from uniform): UserError."""
    residual, output = getattr(model, "residual", True), getattr(model, "output", "trained")
    if residual and output == "trained":
        return "residual"
    if not residual and output == "identity":
        return "identity"
    raise UserError(f"no leading-term theory for residual={residual} with output={output!r}: use the residual "
                    f"model with a trained W_O, or residual=False with output='identity' (docs/theory.md §16)")


@dataclass(frozen=True)
class Statistic:
    field: str    # CorpusStatistics field
    symbol: str
    reads: str    # how row a of the matrix reads (association report, explorer)


# Token × token statistics, in the order the association report lists them.
TOKEN_STATISTICS = (
    Statistic("bigram", "B̄", "a → next token"),
    Statistic("interchangeability", "Σ_B", "interchangeable with a (itself left out)"),
    Statistic("context", "Φ̄", "context tokens predicting a"),
    Statistic("value_map", "(B̄Φ̄)ᵀ", "a in context writes"),
    Statistic("attention_map", "Q̄", "query a attends to"),
)
STATISTIC = {s.field: s for s in TOKEN_STATISTICS}


@dataclass(frozen=True)
class ModelSimilarity:
    """One similarity of the Pythia-style comparison (docs/theory.md §6)."""
    name: str
    statistic: str     # the theory side (a CorpusStatistics field over the token set K)
    model_side: str    # mathtext of the model side
    summary_file: str  # the release's file name under revision_{step}/matrix_theoretical/

    @property
    def title(self) -> str:
        return f"{self.name.replace('_', '-')}: ${self.model_side}$ vs ${KIND_OF_STATISTIC[self.statistic].tex}$"


KIND_OF_STATISTIC = {kind.statistic: kind for kind in WEIGHT_KINDS}
MODEL_SIMILARITIES = (
    ModelSimilarity("attention", "attention_map", r"Q K^\top", "attention_comparison_summary.json"),
    ModelSimilarity("no_mlp", "value_map", r"H_{mid}", "cosine_similarity_summary_mids.json"),
    ModelSimilarity("embedding", "value_map", r"H_{post}", "cosine_similarity_summary.json"),
)

REFERENCES = ("corpus", "path")   # the whole-corpus statistic (§3) or the path-exact prediction (§10)


def log_key(kind: str, layer=None, reference: str = "corpus", rel_err: bool = False) -> str:
    """`log_key('W', 2)` → 'layer_2_W_Q_bar'; `log_key('W_O', reference='path', rel_err=True)` →
    'W_O_path_rel_err'."""
    prefix = "" if layer is None else f"layer_{layer}_"
    stem = KIND[kind].log_stem if reference == "corpus" else "path"
    return f"{prefix}{kind}_{stem}" + ("_rel_err" if rel_err else "")


_KEY = re.compile(r"(?:layer_(\d+)_)?(" + "|".join(re.escape(k.name) for k in WEIGHT_KINDS) + r")_(\w+?)(_rel_err)?")


@dataclass(frozen=True)
class LogKey:
    kind: str
    layer: object      # int, or None for W_O
    reference: str     # 'corpus' or 'path'
    rel_err: bool


def parse_log_key(key: str):
    """The LogKey of a weight's log key, or None for other keys (loss, epoch, …)."""
    match = _KEY.fullmatch(key)
    if not match:
        return None
    layer, kind, stem, rel = match.groups()
    if (layer is None) == KIND[kind].per_layer:
        return None
    if stem == KIND[kind].log_stem:
        reference = "corpus"
    elif stem == "path":
        reference = "path"
    else:
        return None
    return LogKey(kind, None if layer is None else int(layer), reference, rel is not None)
