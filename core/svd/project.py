"""Projection of singular vectors into token space through the unembedding ``W_U``.

The projection of a residual-stream direction ``v`` is ``v @ W_U`` (one value per token).
Both ends matter: the post shows the negative end often carries a separate concept.
The vocabulary is processed in chunks with a running top-k, so memory stays bounded
for large vocabularies.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.svd.decompose import Decomposition


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


# --------------------------------------------------------------------------- tokens


#: Token filter names, each a boolean field of :class:`TokenTable`.
TOKEN_FILTERS: tuple[str, ...] = ("alpha", "ascii", "trained")


@dataclass(frozen=True)
class TokenTable:
    """Readable strings for every token id, and masks for the dashboard's filters.

    Attributes:
        raw: what ``tokenizer.decode([i])`` gives (leading space kept), for JSON output.
        display: readable form: a leading space shown as ``␣``, undecodable bytes as
            ``<0xNN>``, control characters escaped.
        ascii: tokens whose text is printable ASCII.
        alpha: tokens whose text (ignoring one leading space) is alphabetic.
        trained: tokens not detected as under-trained (:mod:`core.svd.undertrained`);
            ``None`` when the tokenizer offers no reference of unused tokens, and then
            the ``trained`` filter keeps every token.
    """

    raw: tuple[str, ...]
    display: tuple[str, ...]
    ascii: Bool[Tensor, " d_vocab"]
    alpha: Bool[Tensor, " d_vocab"]
    trained: Bool[Tensor, " d_vocab"] | None = None

    def mask(self, filters: Sequence[str]) -> Bool[Tensor, " d_vocab"] | None:
        """The intersection of the named filters (``ascii``, ``alpha``, ``trained``), or
        ``None``.
        """
        out: Tensor | None = None
        for f in filters:
            if f not in TOKEN_FILTERS:
                raise ValueError(f"unknown token filter {f!r}: use {', '.join(TOKEN_FILTERS)}")
            m = getattr(self, f)
            if m is None:
                m = torch.ones_like(self.ascii)
            out = m if out is None else out & m
        return out


_BYTE_DECODER: dict[str, int] | None = None


def _byte_decoder() -> dict[str, int]:
    # GPT-2's reversible byte <-> printable-unicode map.
    global _BYTE_DECODER
    if _BYTE_DECODER is None:
        bs = (
            list(range(ord("!"), ord("~") + 1))
            + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1))
        )
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        _BYTE_DECODER = {chr(c): b for b, c in zip(bs, cs)}
    return _BYTE_DECODER


def render_token(piece: str, decoded: str) -> str:
    """Readable form of one token from its vocabulary ``piece`` and ``decode`` output."""
    text = decoded
    if "\ufffd" in decoded:
        # A partial UTF-8 sequence: show its bytes instead of a replacement character.
        dec = _byte_decoder()
        if piece and all(ch in dec for ch in piece):
            raw = bytes(dec[ch] for ch in piece)
            text = "".join(chr(b) if 32 <= b < 127 else f"<0x{b:02X}>" for b in raw)
        else:
            text = piece
    out = []
    for i, ch in enumerate(text):
        if ch == " " and i == 0:
            out.append("␣")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch).startswith("C") and ch != "\ufffd":
            out.append(f"<0x{ord(ch):02X}>")
        else:
            out.append(ch)
    return "".join(out) or "∅"


def token_table(
    tokenizer: Any, d_vocab: int, W_U: Float[Tensor, "d_model d_vocab"] | None = None
) -> TokenTable:
    """Readable strings and filter masks for ids ``0 .. d_vocab-1``.

    Ids past the tokenizer's vocabulary (padded embedding rows) render as ``<pad:N>``.
    With ``W_U`` the ``trained`` mask is detected from it (see
    :mod:`core.svd.undertrained`).
    """
    n_tok = len(tokenizer)
    ids = list(range(min(n_tok, d_vocab)))
    pieces = tokenizer.convert_ids_to_tokens(ids)
    decoded = [tokenizer.decode([i]) for i in ids]
    decoded += [f"<pad:{i}>" for i in range(len(ids), d_vocab)]
    pieces = list(pieces) + decoded[len(ids) :]
    display = [render_token(p or "", t) for p, t in zip(pieces, decoded)]
    # Partial UTF-8 sequences decode to U+FFFD; their byte form says more, so JSON gets it.
    raw = [t if "\ufffd" not in t else d.replace("␣", " ", 1) for t, d in zip(decoded, display)]
    trained = None
    if W_U is not None:
        from core.svd.undertrained import detect, reference_tokens

        ref = reference_tokens(tokenizer, d_vocab, texts=decoded[: len(ids)])
        if int(ref.sum()) >= 2:
            trained = detect(W_U, ref).trained
    return token_table_from_strings(raw, display, trained)


def token_table_from_strings(
    raw: Sequence[str], display: Sequence[str], trained: Bool[Tensor, " d_vocab"] | None = None
) -> TokenTable:
    """The table of :func:`token_table` from its two string lists and its ``trained``
    mask (as the cache keeps them): the other filter masks are computed from ``raw``.
    """
    if len(raw) != len(display):
        raise ValueError("raw and display must list the same tokens")
    ascii_ok = [t.isascii() and t.isprintable() and bool(t.strip()) for t in raw]
    alpha_ok = [(t[1:] if t.startswith(" ") else t).isalpha() for t in raw]
    return TokenTable(
        raw=tuple(raw),
        display=tuple(display),
        ascii=torch.tensor(ascii_ok, dtype=torch.bool),
        alpha=torch.tensor(alpha_ok, dtype=torch.bool),
        trained=trained,
    )
