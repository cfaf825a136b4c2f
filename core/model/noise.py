"""Quantization noise floors: the singular value under which a matrix read from
quantized weights cannot be told apart from its rounding noise.

Model: each stored weight carries independent zero-mean noise of std ``sigma`` (read
from the GGUF's block scales, ``quant_noise.json``; see :mod:`core.model.gguf`). By
Weyl's inequality a perturbation ``E`` moves every singular value by at most
``||E||_2``, so a singular value under ``||E||_2`` may be mostly noise: **not
resolvable**. ``||E||_2`` is estimated by Chevet's inequality for a Gaussian matrix
``G`` (iid standard entries) between fixed matrices,
``E||A G B||_2 <= ||A||_2 ||B||_F + ||A||_F ||B||_2``, which for ``A = I_m``,
``B = I_n`` is the familiar ``sigma (sqrt(m) + sqrt(n))`` of an m x n iid matrix
(:func:`random_top_singular`). Rounding noise is uniform, not Gaussian; the top
singular value of such a matrix follows the same law to leading order.

Per kind (``x @ W`` convention, ``g`` the folded norm scale under ``post``):

* one stored matrix (``mlp_in``, ``mlp_gate``, ``mlp_out``, ``embed``): ``E = diag(g) G sigma``.
* ``ov = W_V W_O`` (and ``qk = W_Q W_K^T``): ``(W_V + E_V)(W_O + E_O) - W_V W_O
  = E_V W_O + W_V E_O + E_V E_O``. The floor is the sum of the two first-order terms'
  Chevet bounds (triangle inequality); the second-order term is ``O(sigma^2)`` and
  dropped. Under grouped-query attention, query head ``h`` reads key/value head
  ``h // (n_heads / n_kv_heads)``: its W_V noise is that key/value head's.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.model.weights import ModelWeights

NOISE_FILE = "quant_noise.json"

#: Hugging Face tensor (``{}`` = layer) holding each factor, for llama-style models.
_LLAMA: dict[str, str] = {
    "q": "model.layers.{}.self_attn.q_proj.weight",
    "k": "model.layers.{}.self_attn.k_proj.weight",
    "v": "model.layers.{}.self_attn.v_proj.weight",
    "o": "model.layers.{}.self_attn.o_proj.weight",
    "mlp_in": "model.layers.{}.mlp.up_proj.weight",
    "mlp_gate": "model.layers.{}.mlp.gate_proj.weight",
    "mlp_out": "model.layers.{}.mlp.down_proj.weight",
    "embed": "model.embed_tokens.weight",
}


@dataclass(frozen=True)
class QuantNoise:
    """Noise std of every stored matrix of a quantized checkpoint.

    Attributes:
        source: where the quantized weights came from.
        n_heads: query heads.
        n_kv_heads: key/value heads.
        tensors: per Hugging Face tensor name: ``quant``, ``shape``, ``sigma`` and, for
            attention projections, ``head_sigma`` (see :func:`core.model.gguf.quant_noise`).
    """

    source: str
    n_heads: int
    n_kv_heads: int
    tensors: dict[str, dict[str, Any]]

    def sigma(self, part: str, layer: int, head: int | None = None) -> float:
        """Noise std of one factor (``q k v o mlp_in mlp_gate mlp_out embed``); with
        ``head``, of that query head's slice (its key/value head's for K and V).
        """
        e = self.tensors.get(_LLAMA[part].format(layer))
        if e is None:
            return 0.0
        hs = e.get("head_sigma")
        if head is not None and hs:
            group = self.n_heads // max(self.n_kv_heads, 1)
            return float(hs[head // group if part in ("k", "v") else head])
        return float(e["sigma"])


def noise_for_model(spec: str) -> QuantNoise | None:
    """The noise table of the checkpoint ``spec`` resolves to, or ``None`` (a hub id, or
    a checkpoint that was not built from quantized weights).
    """
    from core.errors import CoreError
    from core.model.loading import resolve_model

    try:
        path = Path(resolve_model(spec))
    except CoreError:
        return None
    if not (path / NOISE_FILE).is_file():
        return None
    return _read_cached(str(path), (path / NOISE_FILE).stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime_ns: int) -> QuantNoise | None:
    return read_noise(path)


def read_noise(model_dir: str | Path) -> QuantNoise | None:
    """The checkpoint's ``quant_noise.json``, or ``None`` (not quantized, or not a dir)."""
    path = Path(model_dir) / NOISE_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return QuantNoise(
        source=str(raw.get("source", "")),
        n_heads=int(raw["n_heads"]),
        n_kv_heads=int(raw["n_kv_heads"]),
        tensors=dict(raw["tensors"]),
    )


def random_top_singular(sigma: float, m: int, n: int) -> float:
    """Top singular value of an ``m x n`` matrix of iid entries of std ``sigma``:
    ``sigma (sqrt(m) + sqrt(n))`` (exact as m, n grow; an upper bound in expectation).
    """
    return sigma * (math.sqrt(m) + math.sqrt(n))


def chevet(
    sigma: float,
    left: Float[Tensor, "m p"] | Float[Tensor, " p"] | int,
    right: Float[Tensor, "q n"] | int,
) -> float:
    """Chevet's bound on ``E||A (sigma G) B||_2`` for G ``p x q`` iid standard.

    ``left``/``right`` are the fixed matrices, a vector meaning ``diag(vector)``, or an
    int ``k`` meaning the identity ``I_k``.
    """

    def norms(x: Tensor | int) -> tuple[float, float]:
        if isinstance(x, int):
            return 1.0, math.sqrt(x)
        x = x.double()
        if x.dim() == 1:
            return float(x.abs().max()), float(x.norm())
        return float(torch.linalg.matrix_norm(x, ord=2)), float(x.norm())

    a_op, a_f = norms(left)
    b_op, b_f = norms(right)
    return sigma * (a_op * b_f + a_f * b_op)


def noise_floor(
    noise: QuantNoise,
    raw: ModelWeights,
    weights: ModelWeights,
    kind: str,
    layer: int,
    head: int | None = None,
) -> float:
    """The singular value under which ``weights.matrix(kind, layer, head)`` is not
    resolvable from quantization noise (see the module docstring).

    Args:
        noise: the checkpoint's noise table.
        raw: the weights as stored (for the norm scales ``post`` folded in).
        weights: the view whose matrix is decomposed (``raw`` or ``post``).
        kind: matrix kind.
        layer: layer index.
        head: query head for ``ov``/``qk``.
    """
    m = raw.meta
    post = weights.processing == "post"

    def gain(ln: Tensor | None, i: int) -> Tensor | int:
        if not post or ln is None:
            return m.d_model
        return ln[i]

    if kind == "ov":
        assert head is not None
        W_V, W_O = weights.W_V[layer, head], weights.W_O[layer, head]
        # E_V is stored noise scaled by the folded gain on its d_model rows; E_O is stored.
        e_v = chevet(noise.sigma("v", layer, head), gain(raw.ln1_w, layer), W_O)
        e_o = chevet(noise.sigma("o", layer, head), W_V, m.d_model)
        return e_v + e_o
    if kind == "qk":
        assert head is not None
        W_Q, W_K = weights.W_Q[layer, head], weights.W_K[layer, head]
        g = gain(raw.ln1_w, layer)
        e_q = chevet(noise.sigma("q", layer, head), g, W_K.T)
        # W_Q E_K^T with E_K = diag(g) G: its norm is that of diag(g) G W_Q^T.
        e_k = chevet(noise.sigma("k", layer, head), g, W_Q.T)
        return e_q + e_k
    if kind in ("mlp_in", "mlp_gate"):
        return chevet(noise.sigma(kind, layer), gain(raw.ln2_w, layer), m.d_mlp)
    if kind == "mlp_out":
        return random_top_singular(noise.sigma(kind, layer), m.d_mlp, m.d_model)
    if kind == "embed":
        return random_top_singular(noise.sigma("embed", 0), m.d_vocab, m.d_model)
    raise KeyError(kind)


def kind_floors(
    noise: QuantNoise,
    raw: ModelWeights,
    weights: ModelWeights,
    kind: str,
    components: Sequence[tuple[int, int | None]],
) -> Float[Tensor, " component"]:
    """:func:`noise_floor` of each of ``kind``'s ``components``, in their order (what the
    cache keeps, so the spectra show the floor without loading the model).
    """
    floors = [noise_floor(noise, raw, weights, kind, layer, head) for layer, head in components]
    return torch.tensor(floors, dtype=torch.float32)
