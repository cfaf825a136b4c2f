"""Projection of singular vectors into token space through the unembedding ``W_U``.

The projection of a residual-stream direction ``v`` is ``v @ W_R`` (one value per token),
where ``W_R = read_unembed(W_U, projection)`` is the unembedding as directions are read
(:func:`read_unembed`: ``raw`` is the post's ``v @ W_U``). The transform is a shift and
a scale of ``W_U``'s columns applied once, where an analysis is made, so every consumer
(cache, grid, search, labels, edit reports) reads the same tokens; edits act on the
real weights. Both ends matter: the post shows the negative end often carries a
separate concept. The vocabulary is processed in chunks with a running top-k, so memory
stays bounded for large vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.settings import PROJECTIONS
from core.svd.decompose import Decomposition
from core.svd.tokens import (  # re-exported: the token table was first defined here
    TOKEN_FILTERS,
    TokenTable,
    render_token,
    token_table,
    token_table_from_strings,
)

__all__ = [
    "TOKEN_FILTERS",
    "TokenTable",
    "TopTokens",
    "orient",
    "project_topk",
    "read_unembed",
    "render_token",
    "token_signs",
    "token_table",
    "token_table_from_strings",
]


def read_unembed(
    W_U: Float[Tensor, "d_model d_vocab"], projection: str
) -> Float[Tensor, "d_model d_vocab"]:
    """The unembedding as directions are read, ``W_R``: token ``t``'s value for a
    direction ``v`` is ``v @ W_R[:, t]``. Float32, on ``W_U``'s device.

    * ``raw``: ``W_U`` itself (the post's ``v @ W_U``).
    * ``centred``: ``W_U - mu``, ``mu`` the mean column over the vocabulary. It shifts
      all of one direction's values by ``v @ mu``, so the order of its tokens is the
      same as ``raw``'s but the two ends (and so the sign rule) are weighed from the
      vocabulary's mean logit instead of from zero.
    * ``standardized``: ``(W_U - mu) * sqrt(d_model) / ||W_U[:, t] - mu||``, each
      token's centred logit as a z-score against the random control: for an isotropic
      random unit direction ``v``, ``v @ (w_t - mu)`` has mean 0 and standard deviation
      ``||w_t - mu|| / sqrt(d_model)``. A unit direction's value for ``t`` is then
      ``sqrt(d_model)`` times the cosine between ``v`` and ``w_t - mu``: a token's
      unembedding norm no longer decides whether it reaches an end. (Columns at the
      mean, within float32 rounding, stay zero.)

    Raises:
        ValueError: an unknown projection.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, not {projection!r}")
    W = W_U.detach().float()
    if projection == "raw":
        return W
    W = W - W.mean(dim=1, keepdim=True)
    if projection == "centred":
        return W
    norm = W.norm(dim=0, keepdim=True)
    # A column at the mean (up to float32 rounding) has no direction to scale up.
    live = norm > 1e-6 * norm.max().clamp_min(1e-30)
    scale = torch.where(live, W.shape[0] ** 0.5 / norm.clamp_min(1e-30), 0.0)
    return W * scale


@dataclass(frozen=True)
class TopTokens:
    """The ``k`` highest and lowest projections of each of ``n`` directions.

    ``bottom_*`` are sorted ascending (most negative first).
    """

    top_idx: Int[Tensor, "n k"]
    top_val: Float[Tensor, "n k"]
    bottom_idx: Int[Tensor, "n k"]
    bottom_val: Float[Tensor, "n k"]

    def __post_init__(self) -> None:
        shape = self.top_idx.shape
        for t in (self.top_val, self.bottom_idx, self.bottom_val):
            if t.shape != shape:
                raise ValueError("top/bottom index and value tensors must share a shape")

    def flipped(self, flip: Bool[Tensor, " n"]) -> TopTokens:
        """Results for ``-v`` where ``flip`` is set: the two ends swap and change sign."""
        f = flip[:, None]
        return TopTokens(
            top_idx=torch.where(f, self.bottom_idx, self.top_idx),
            top_val=torch.where(f, -self.bottom_val, self.top_val),
            bottom_idx=torch.where(f, self.top_idx, self.bottom_idx),
            bottom_val=torch.where(f, -self.top_val, self.bottom_val),
        )


#: Vocabulary columns per group in the fused top/bottom-k (see :func:`_block_candidates`).
_GROUP = 64
#: Elements of one projected block (rows x vocabulary chunk): 64 MiB of float32.
_BLOCK_ELEMS = 1 << 24


def project_topk(
    dirs: Float[Tensor, "n d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    k: int,
    chunk: int = 16384,
    mask: Bool[Tensor, " d_vocab"] | None = None,
) -> TopTokens:
    """Top-``k`` and bottom-``k`` tokens of ``dirs @ W_U``, vocabulary chunked.

    ``mask`` keeps only the tokens where it is true (filters). ``k`` is capped at the
    number of kept tokens. Accumulates in float32 whatever the inputs' dtype.

    The product runs block by block (``chunk`` vocabulary columns, widened up to the
    whole vocabulary when few directions leave room, and ``2**24 / chunk`` directions at
    once), so memory stays bounded whatever ``n`` is;
    each block's two ends come from one pass of group maxima and minima instead of two
    full top-k passes (:func:`_block_candidates`). The result is exactly the top-k of
    the full product (up to ties).
    """
    n, V = dirs.shape[0], W_U.shape[1]
    device = dirs.device
    dirs = dirs.float()
    kept = V if mask is None else int(mask.sum())
    k = max(1, min(k, kept))
    # Few directions (one head's grid): fewer, wider blocks. Each block switches between
    # OpenBLAS's threads and torch's, which spin against each other on a small CPU; one
    # 64 x 40k block took 37-47 ms where three 16k-wide ones took 64-104 ms.
    chunk = max(1, min(V, max(chunk, _BLOCK_ELEMS // max(n, 1))))
    rows = max(1, _BLOCK_ELEMS // chunk)
    starts = list(range(0, V, chunk))
    # Each chunk's own ends, merged by one final top-k over [n, n_chunks * k].
    width = sum(min(k, V - s, chunk) for s in starts)
    tv_all = torch.empty(n, width, device=device)
    bv_all = torch.empty(n, width, device=device)
    ti_all = torch.empty(n, width, dtype=torch.long, device=device)
    bi_all = torch.empty(n, width, dtype=torch.long, device=device)
    col = 0
    for start in starts:
        Wc = W_U[:, start : start + chunk].to(device=device, dtype=torch.float32)
        if n > rows:  # a contiguous copy pays off only when several row blocks reuse it
            Wc = Wc.contiguous()
        m = None if mask is None else mask[start : start + chunk].to(device)
        kk = min(k, Wc.shape[1])
        for r0 in range(0, n, rows):
            tv, ti, bv, bi = _block_candidates(_matmul(dirs[r0 : r0 + rows], Wc), kk, m)
            r1 = r0 + tv.shape[0]
            tv_all[r0:r1, col : col + kk], ti_all[r0:r1, col : col + kk] = tv, ti + start
            bv_all[r0:r1, col : col + kk], bi_all[r0:r1, col : col + kk] = bv, bi + start
        col += kk
    top_v, order = tv_all.topk(k, dim=1)
    top_i = ti_all.gather(1, order)
    bot_v, order = bv_all.topk(k, dim=1, largest=False)
    bot_i = bi_all.gather(1, order)
    return TopTokens(top_i, top_v, bot_i, bot_v)


#: Multiply-adds from which a CPU product goes through OpenBLAS rather than torch.
_OPENBLAS_MIN = 1 << 30


def _matmul(a: Float[Tensor, "r d"], b: Float[Tensor, "d c"]) -> Float[Tensor, "r c"]:
    """``a @ b`` in float32; big CPU products through NumPy's OpenBLAS, whose SGEMM took
    25-40% less time than torch's MKL on the AMD EPYC CPUs we measured (BENCHMARKS.md).

    Small ones stay in torch: handing the cores from OpenBLAS's threads to torch's costs
    more than it saves there (their spinning threads fight on a small CPU): a search's
    uncached hits went from a 16 ms median (p95 80 ms) to 5 ms (p95 10 ms) on the demo.
    """
    if a.device.type != "cpu" or a.shape[0] * a.shape[1] * b.shape[1] < _OPENBLAS_MIN:
        return a @ b
    import numpy as np

    an = np.ascontiguousarray(a.detach().numpy())
    bn = b.detach().numpy()
    if bn.strides[-1] != bn.itemsize:  # keep BLAS-compatible strides
        bn = np.ascontiguousarray(bn)
    return torch.from_numpy(an @ bn)


def _block_candidates(
    block: Float[Tensor, "r c"], k: int, mask: Bool[Tensor, " c"] | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top-``k`` (descending) and bottom-``k`` (ascending) values and columns of each row.

    The columns are cut into groups of ``_GROUP``; a row's ``k`` largest values lie in
    the ``k`` groups with the largest maxima (any other group's maximum is beaten by
    ``k`` values from those groups), so one cheap max (and min) pass over the block and
    a top-k over ``k * _GROUP`` candidates replace two top-k passes over every column.
    """
    r, c = block.shape
    hi, lo = block, block
    if mask is not None:  # ``block`` is this call's own buffer: fill it in place for lo
        hi = block.masked_fill(~mask, float("-inf"))
        lo = block.masked_fill_(~mask, float("inf"))
    g = c // _GROUP
    if g <= k:
        tv, ti = hi.topk(k, dim=1)
        bv, bi = lo.topk(k, dim=1, largest=False)
        return tv, ti, bv, bi
    full = g * _GROUP
    out: list[Tensor] = []
    offsets = torch.arange(_GROUP, device=block.device)
    for x, largest in ((hi, True), (lo, False)):
        groups = x[:, :full].view(r, g, _GROUP)
        ext = groups.amax(dim=2) if largest else groups.amin(dim=2)
        gi = ext.topk(k, dim=1, largest=largest).indices  # [r, k]
        cols = (gi[:, :, None] * _GROUP + offsets).flatten(1)
        if full < c:  # the ragged tail is always a candidate
            tail = torch.arange(full, c, device=block.device).expand(r, c - full)
            cols = torch.cat([cols, tail], dim=1)
        v, j = x.gather(1, cols).topk(k, dim=1, largest=largest)
        out += [v, cols.gather(1, j)]
    return out[0], out[1], out[2], out[3]


def token_signs(
    dirs: Float[Tensor, "n d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    k: int,
    chunk: int = 16384,
) -> tuple[Bool[Tensor, " n"], TopTokens]:
    """The sign rule: a direction is flipped when its largest-magnitude token projection
    is negative, so ``top`` is always the stronger end.

    Returns ``flip`` ``[n]`` (use ``-dirs[i]`` where set) and the top tokens of the
    oriented directions.
    """
    tops = project_topk(dirs, W_U, k, chunk)
    flip = tops.top_val[:, 0] < -tops.bottom_val[:, 0]
    return flip, tops.flipped(flip)


def orient(
    decomposition: Decomposition,
    W_U: Float[Tensor, "d_model d_vocab"],
    k: int,
    n_project: int | None,
    chunk: int = 16384,
    start: int = 0,
) -> tuple[Decomposition, TopTokens]:
    """Fix each direction's sign and project the first ``n_project`` of each component.

    Sign rule (:func:`token_signs`): the token with the largest absolute projection is
    positive (so ``top`` is the stronger end). Directions beyond ``n_project`` are not projected; their sign
    makes the largest-magnitude entry of the residual-side vector positive.

    With ``start > 0`` the first ``start`` directions are taken as already oriented (a
    previous call with ``n_project=start``) and only directions ``start .. n_project-1``
    are projected: two calls give the signs and ends of one.

    Returns the re-signed decomposition and the top tokens with shape
    ``[comp * (n_project - start), k]`` (component-major).
    """
    dirs = decomposition.directions  # [C, d, r]
    C, d, r = dirs.shape
    n = r if n_project is None else min(n_project, r)
    start = min(max(start, 0), n)
    signs = torch.ones(C, r, dtype=dirs.dtype, device=dirs.device)
    if start == 0:
        # Fallback rule for every direction, then the token rule overrides the projected ones.
        amax = dirs.abs().argmax(dim=1, keepdim=True)  # [C, 1, r]
        signs = torch.where(dirs.gather(1, amax)[:, 0, :] < 0, -signs, signs)
    flat = dirs[:, :, start:n].permute(0, 2, 1).reshape(C * (n - start), d)
    flip, tops = token_signs(flat, W_U, k, chunk)
    signs[:, start:n] = torch.where(flip.reshape(C, n - start), -1.0, 1.0).to(signs.dtype)
    return decomposition.with_signs(signs), tops
