"""An architecture-independent view of the weights the SVD method reads.

Built from TransformerLens's ``tl_parameters()`` dictionary, which already speaks one
naming scheme for GPT-2 (Conv1D), GPT-NeoX (parallel attention) and Llama (RMSNorm,
gated MLP, grouped-query attention with key/value heads repeated per query head).

Conventions follow TransformerLens: activations are row vectors, ``x @ W``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.errors import ModelLoadError
from core.model.families import supported
from core.model.fold import FOLDED, fold_like


@dataclass(frozen=True)
class ModelMeta:
    """Shape and architecture facts about a model.

    Attributes:
        name: the model spec the user gave.
        architecture: Hugging Face architecture name, e.g. ``GPT2LMHeadModel``.
        normalization: ``"LN"`` (LayerNorm), ``"RMS"`` (RMSNorm) or ``None``.
        gated: whether the MLP has a gate (``W_gate``).
        n_kv_heads: key/value heads; fewer than ``n_heads`` means grouped-query attention,
            where query heads of one group share W_V (and so share OV read directions).
        weights_hash: blake2b digest of every tensor the view holds, as stored.
    """

    name: str
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    normalization: str | None
    gated: bool
    parallel_attn_mlp: bool
    weights_hash: str

    def n_heads_for(self, kind: str) -> int:
        """Heads for head kinds (ov, qk); 0 for MLP and embedding kinds."""
        return self.n_heads if kind in ("ov", "qk") else 0

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)


#: The matrices of :class:`ModelWeights` each kind is made of (:meth:`ModelWeights.matrix`).
READS: dict[str, tuple[str, ...]] = {
    "ov": ("W_V", "W_O"),
    "qk": ("W_Q", "W_K"),
    "mlp_in": ("W_in",),
    "mlp_gate": ("W_gate",),
    "mlp_out": ("W_out",),
    "embed": ("W_E",),
}


@dataclass(frozen=True)
class ModelWeights:
    """The matrices of a model, stacked by layer (and head).

    ``processing`` says whether the normalisation scales (and LayerNorm centring) are
    folded into the matrices that read from the residual stream: W_Q, W_K, W_V, W_in,
    W_gate and W_U. ``ln*_w`` are kept only in the ``raw`` view (``None`` after folding).
    """

    meta: ModelMeta
    processing: str
    W_Q: Float[Tensor, "layer head d_model d_head"]
    W_K: Float[Tensor, "layer head d_model d_head"]
    W_V: Float[Tensor, "layer head d_model d_head"]
    W_O: Float[Tensor, "layer head d_head d_model"]
    W_in: Float[Tensor, "layer d_model d_mlp"]
    W_gate: Float[Tensor, "layer d_model d_mlp"] | None
    W_out: Float[Tensor, "layer d_mlp d_model"]
    W_E: Float[Tensor, "d_vocab d_model"]
    W_U: Float[Tensor, "d_model d_vocab"]
    ln1_w: Float[Tensor, "layer d_model"] | None
    ln2_w: Float[Tensor, "layer d_model"] | None
    lnf_w: Float[Tensor, " d_model"] | None

    def __post_init__(self) -> None:
        m = self.meta
        expect = {
            "W_Q": (m.n_layers, m.n_heads, m.d_model, m.d_head),
            "W_K": (m.n_layers, m.n_heads, m.d_model, m.d_head),
            "W_V": (m.n_layers, m.n_heads, m.d_model, m.d_head),
            "W_O": (m.n_layers, m.n_heads, m.d_head, m.d_model),
            "W_in": (m.n_layers, m.d_model, m.d_mlp),
            "W_out": (m.n_layers, m.d_mlp, m.d_model),
            "W_E": (m.d_vocab, m.d_model),
            "W_U": (m.d_model, m.d_vocab),
        }
        if self.W_gate is not None:
            expect["W_gate"] = (m.n_layers, m.d_model, m.d_mlp)
        for name, shape in expect.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"{name} has shape {got}, expected {shape}")

    def matrix(self, kind: str, layer: int, head: int | None = None) -> Tensor:
        """The dense matrix of one component (``x @ W`` convention).

        Shapes: ov, qk ``[d_model, d_model]``; mlp_in, mlp_gate ``[d_model, d_mlp]``;
        mlp_out ``[d_mlp, d_model]``; embed ``[d_vocab, d_model]``.
        """
        if kind == "ov":
            assert head is not None
            return self.W_V[layer, head] @ self.W_O[layer, head]
        if kind == "qk":
            assert head is not None
            return self.W_Q[layer, head] @ self.W_K[layer, head].T
        if kind == "mlp_in":
            return self.W_in[layer]
        if kind == "mlp_gate":
            if self.W_gate is None:
                raise KeyError("mlp_gate")
            return self.W_gate[layer]
        if kind == "mlp_out":
            return self.W_out[layer]
        if kind == "embed":
            return self.W_E
        raise KeyError(kind)

    def kinds(self) -> tuple[str, ...]:
        """Matrix kinds this model has, in display order."""
        from core.settings import MATRIX_KINDS

        return tuple(k for k in MATRIX_KINDS if k != "mlp_gate" or self.W_gate is not None)

    def replace(self, **changes: Any) -> ModelWeights:
        """A copy with some tensors replaced (shapes validated again)."""
        return dataclasses.replace(self, **changes)


def _get(params: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in params:
        raise ModelLoadError(
            f"The model has no {key}; only models with dense attention and MLP blocks "
            f"({supported()}) are supported."
        )
    return params[key].detach().to(torch.float32)


#: The tensors a model's weights hash covers (:func:`weights_from_params`).
HASHED = (
    "W_Q",
    "W_K",
    "W_V",
    "W_O",
    "W_in",
    "W_gate",
    "W_out",
    "W_E",
    "W_U",
    "ln1_w",
    "ln2_w",
    "lnf_w",
)


def weights_from_params(
    params: Mapping[str, Tensor], cfg: Any, name: str, architecture: str | None = None
) -> ModelWeights:
    """Build the raw view from a ``tl_parameters()`` dict and the bridge's ``cfg``.

    Tensors are detached float32 copies, so nothing here aliases the live model.
    """
    n_layers = int(cfg.n_layers)

    def stack(fmt: str) -> Tensor:
        # torch.stack copies: the result aliases nothing of the model.
        return torch.stack([_get(params, fmt.format(i)) for i in range(n_layers)])

    def maybe_stack(fmt: str) -> Tensor | None:
        if fmt.format(0) not in params:
            return None
        return stack(fmt)

    gated = "blocks.0.mlp.W_gate" in params
    norm = cfg.normalization_type
    normalization = "RMS" if norm and "RMS" in norm else ("LN" if norm else None)
    ln1 = maybe_stack("blocks.{}.ln1.w")
    ln2 = maybe_stack("blocks.{}.ln2.w")
    lnf = params.get("ln_final.w")
    if getattr(cfg, "rmsnorm_uses_offset", False):
        # Gemma-style RMSNorm stores the scale as an offset from one.
        ln1 = None if ln1 is None else ln1 + 1.0
        ln2 = None if ln2 is None else ln2 + 1.0
        lnf = None if lnf is None else lnf + 1.0
    W_in = stack("blocks.{}.mlp.W_in")
    W_Q = stack("blocks.{}.attn.W_Q")
    n_kv = getattr(cfg, "n_key_value_heads", None) or int(cfg.n_heads)
    meta_fields = dict(
        name=name,
        architecture=architecture or str(getattr(cfg, "original_architecture", None) or "unknown"),
        n_layers=n_layers,
        n_heads=int(W_Q.shape[1]),
        n_kv_heads=int(n_kv),
        d_model=int(W_Q.shape[2]),
        d_head=int(W_Q.shape[3]),
        d_mlp=int(W_in.shape[2]),
        d_vocab=int(_get(params, "unembed.W_U").shape[1]),
        normalization=normalization,
        gated=gated,
        parallel_attn_mlp=bool(getattr(cfg, "parallel_attn_mlp", False)),
    )
    tensors: dict[str, Tensor | None] = dict(
        W_Q=W_Q,
        W_K=stack("blocks.{}.attn.W_K"),
        W_V=stack("blocks.{}.attn.W_V"),
        W_O=stack("blocks.{}.attn.W_O"),
        W_in=W_in,
        W_gate=stack("blocks.{}.mlp.W_gate") if gated else None,
        W_out=stack("blocks.{}.mlp.W_out"),
        W_E=_get(params, "embed.W_E").clone(),
        W_U=_get(params, "unembed.W_U").clone(),
        ln1_w=ln1,
        ln2_w=ln2,
        lnf_w=None if lnf is None else lnf.detach().float().clone(),
    )
    assert set(tensors) == set(HASHED)
    meta = ModelMeta(**meta_fields, weights_hash=hash_tensors(tensors))  # type: ignore[arg-type]
    return ModelWeights(meta=meta, processing="raw", **tensors)  # type: ignore[arg-type]


def hash_tensors(tensors: Mapping[str, Tensor | None]) -> str:
    """A stable digest of named tensors (names, shapes and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(tensors):
        t = tensors[key]
        if t is None:
            continue
        h.update(f"{key}:{tuple(t.shape)}".encode())
        hash_bytes(h, t)
    return h.hexdigest()


def hash_bytes(h: Any, t: Tensor) -> None:
    """Feed ``t``'s values to hash ``h`` as float32 bytes in C order (what
    :func:`hash_tensors` digests). A contiguous float32 CPU tensor is read in place: a
    model's weights are hashed on every load, and a copy of each (``tobytes``) took as
    long as the hash itself.
    """
    h.update(t.detach().cpu().float().contiguous().numpy())


def process(weights: ModelWeights, processing: str) -> ModelWeights:
    """Return the view for ``processing`` (``raw`` or ``post``); the input is unchanged.

    ``post`` folds each normalisation's scale into the matrices that read its output,
    and for LayerNorm also centres them over ``d_model`` (LayerNorm subtracts the mean,
    so the component of a reading direction along the all-ones vector is never seen);
    see :func:`core.model.fold.fold`. Writing matrices (W_O, W_out, W_E) are identical
    under both.
    """
    if processing == "raw":
        return weights
    if processing != "post":
        raise ValueError(f"processing must be 'raw' or 'post', not {processing!r}")
    if weights.processing == "post":
        return weights
    folded = {n: getattr(weights, n) for n in FOLDED if getattr(weights, n) is not None}
    return weights.replace(
        processing="post",
        **{n: fold_like(weights, n, W) for n, W in folded.items()},
        ln1_w=None,
        ln2_w=None,
        lnf_w=None,
    )
