"""Questions asked of an :class:`~core.analysis.Analysis`: one component's directions
with their token ends, from the cache when it can answer, else projected on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.analysis import Analysis, settings_key
from core.cache.store import KindResult
from core.decompose import Components, DecomposeOptions, check_method
from core.decompose import components as decompose_components
from core.errors import SpecError
from core.progress import Progress, quiet
from core.random_control import control_result
from core.settings import HEAD_KINDS, MATRIX_KINDS
from core.svd.project import TokenTable, TopTokens, project_topk, token_signs


@dataclass(frozen=True)
class Direction:
    """One singular direction with its token ends.

    ``top`` and ``bottom`` are lists of ``(raw token, display token, value)``; bottom
    is ordered most negative first.
    """

    index: int
    singular_value: float
    degenerate: bool
    top: list[tuple[str, str, float]]
    bottom: list[tuple[str, str, float]]

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form: ``{"index", "singular_value", "top", "bottom"}``."""
        return {
            "index": self.index,
            "singular_value": self.singular_value,
            "degenerate": self.degenerate,
            "top": [[t, v] for t, _, v in self.top],
            "bottom": [[t, v] for t, _, v in self.bottom],
        }


def check_component(meta: Any, kind: str, layer: int, head: int | None, has_gate: bool) -> None:
    """Raise :class:`SpecError` with one sentence when ``(kind, layer, head)`` is invalid."""
    if kind not in MATRIX_KINDS:
        raise SpecError(f"Unknown matrix {kind!r}; use one of {', '.join(MATRIX_KINDS)}.")
    if kind == "mlp_gate" and not has_gate:
        raise SpecError("This model's MLP has no gate; use mlp_in or mlp_out.")
    n_layers = 1 if kind == "embed" else meta.n_layers
    if not 0 <= layer < n_layers:
        raise SpecError(
            f"Layer {layer} is out of range; this model has layers 0 to {n_layers - 1}"
            + (" (the embedding has only layer 0)." if kind == "embed" else ".")
        )
    if kind in HEAD_KINDS:
        if head is None:
            raise SpecError(f"{kind} is per head; give --head between 0 and {meta.n_heads - 1}.")
        if not 0 <= head < meta.n_heads:
            raise SpecError(
                f"Head {head} is out of range; this model has heads 0 to {meta.n_heads - 1}."
            )
    elif head is not None:
        raise SpecError(f"{kind} has no heads; leave out --head.")


def kind_result(analysis: Analysis, kind: str, control: bool = False) -> KindResult:
    """The cached result of ``kind`` (or its control, built on first use); :class:`SpecError`
    if the entry does not hold ``kind``.
    """
    if kind not in analysis.svd.kinds:
        raise SpecError(
            f"{kind} is not in this cache entry; rebuild with that kind included (precompute)."
        )
    return control_result(analysis, kind) if control else analysis.svd.kinds[kind]


def _check_counts(n: int, k: int) -> None:
    """Refuse a direction count or token count below one."""
    if k < 1:
        raise SpecError(f"k must be at least 1, not {k}.")
    if n < 1:
        raise SpecError(f"n must be at least 1, not {n}.")


def directions(
    analysis: Analysis,
    kind: str,
    layer: int,
    head: int | None = None,
    n: int = 10,
    k: int = 20,
    filters: Sequence[str] = (),
    control: bool = False,
) -> list[Direction]:
    """The first ``n`` directions of one component with ``k`` tokens at each end.

    For a control, ``head`` is ignored (one control per layer). Served from the cache
    when it holds them unfiltered, else projected on demand.
    """
    _check_counts(n, k)
    check_component(analysis.meta, kind, layer, head, analysis.meta.gated)
    res = kind_result(analysis, kind, control)
    d = res.decomposition
    c = d.index(layer, (0 if kind in HEAD_KINDS else None) if control else head)
    n = min(n, d.rank)
    if not filters and k <= analysis.svd.k and n <= res.n_projected:
        rows = slice(c * res.n_projected, c * res.n_projected + n)
        t = res.tops
        tops = TopTokens(
            t.top_idx[rows, :k], t.top_val[rows, :k], t.bottom_idx[rows, :k], t.bottom_val[rows, :k]
        )
    else:
        dirs = d.directions[c, :, :n].T
        chunk = analysis.settings.vocab_chunk
        # Directions past the cached ones have not had the sign rule yet (a background
        # fill may still be on its way to them): apply it here, so the answer is the one
        # the filled cache gives.
        m = min(res.n_projected, n)
        if filters:
            if m < n:
                flip, _ = token_signs(dirs[m:], analysis.W_U, 1, chunk)
                dirs = torch.cat([dirs[:m], torch.where(flip[:, None], -dirs[m:], dirs[m:])])
            W_sub, ids = filtered_unembed(analysis, filters)
            t = project_topk(dirs, W_sub, k, chunk)
            tops = TopTokens(ids[t.top_idx], t.top_val, ids[t.bottom_idx], t.bottom_val)
        else:
            tops = project_topk(dirs, analysis.W_U, k, chunk)
            flip = tops.top_val[:, 0] < -tops.bottom_val[:, 0]
            flip[:m] = False
            tops = tops.flipped(flip)
    return [
        Direction(
            index=i,
            singular_value=float(d.S[c, i]),
            degenerate=bool(d.degenerate[c, i]),
            top=_named(analysis.tokens, tops.top_idx[i], tops.top_val[i]),
            bottom=_named(analysis.tokens, tops.bottom_idx[i], tops.bottom_val[i]),
        )
        for i in range(n)
    ]


def filtered_unembed(
    analysis: Analysis, filters: Sequence[str]
) -> tuple[Float[Tensor, "d_model kept"], Int[Tensor, " kept"]]:
    """``W_U`` restricted to the tokens that pass ``filters``, and those tokens' ids.

    Projecting onto the kept columns only is cheaper than masking the full product;
    the result is memoised per filter set.

    Raises:
        SpecError: no token passes the filters.
    """
    key = tuple(sorted(set(filters)))
    hit = analysis._unembed_memo.get(key)
    if hit is None:
        mask = analysis.tokens.mask(key)
        assert mask is not None
        ids = mask.nonzero().squeeze(1)
        if ids.numel() == 0:
            raise SpecError(f"No token passes the filters {', '.join(key)}; remove a filter.")
        hit = (analysis.W_U[:, ids].contiguous(), ids)
        analysis._unembed_memo[key] = hit
    return hit


def _named(
    tokens: TokenTable, idx: torch.Tensor, val: torch.Tensor
) -> list[tuple[str, str, float]]:
    # tolist() once: indexing tensors element by element cost ~16 ms per grid.
    raw, display = tokens.raw, tokens.display
    return [(raw[i], display[i], v) for i, v in zip(idx.tolist(), val.tolist())]


def method_components(
    analysis: Analysis,
    method: str,
    kind: str,
    layer: int,
    control: bool = False,
    options: DecomposeOptions | None = None,
    progress: Progress = quiet,
    build: bool = True,
) -> Components | Any:
    """``method``'s components of ``kind`` at ``layer`` (``ov``: the layer's stacked heads),
    read from the cache entry's parts or built now (see :func:`core.decompose.components`);
    with ``build=False``, ``None`` when not built yet.

    Raises:
        SpecError: the method does not read that matrix, or the layer is out of range.
    """
    from core.decompose.build import load_components

    opts = (options or DecomposeOptions(seed=analysis.settings.seed)).replace(method=method)
    key = settings_key(analysis.settings)
    if not build:
        check_method(method, kind, layer, analysis.meta.n_layers)
        return load_components(analysis, key, opts, kind, layer, control)
    return decompose_components(analysis, key, opts, kind, layer, control, progress)


def method_directions(
    analysis: Analysis,
    method: str,
    kind: str,
    layer: int,
    head: int | None = None,
    n: int = 10,
    k: int = 20,
    filters: Sequence[str] = (),
    control: bool = False,
    options: DecomposeOptions | None = None,
    progress: Progress = quiet,
) -> list[Direction]:
    """:func:`directions` for any method: ``svd`` is :func:`directions` itself; the others
    give their first ``n`` components (strongest first; ``singular_value`` is the share
    of squared norm each explains) with ``k`` tokens at each end, read through ``W_U``
    (NMF: from the component's own token weights). ``head`` is ignored for them.
    """
    if method == "svd":
        return directions(analysis, kind, layer, head, n, k, filters, control)
    _check_counts(n, k)
    check_method(method, kind, layer, analysis.meta.n_layers)
    c = method_components(analysis, method, kind, layer, control, options, progress)
    n = min(n, c.n)
    mask = analysis.tokens.mask(tuple(filters)) if filters else None
    if c.token_weights is not None:
        tw = c.token_weights[:n].float()
        if mask is not None:
            tw = tw.masked_fill(~mask[None, :], float("nan"))
        kk = min(k, tw.shape[1])
        hi = tw.nan_to_num(float("-inf")).topk(kk, dim=1)
        lo = tw.nan_to_num(float("inf")).topk(kk, dim=1, largest=False)
        tops = TopTokens(hi.indices, hi.values, lo.indices, lo.values)
    else:
        tops = project_topk(c.directions[:n], analysis.W_U, k, analysis.settings.vocab_chunk, mask)
    return [
        Direction(
            index=i,
            singular_value=float(c.strength[i]),
            degenerate=False,
            top=_named(analysis.tokens, tops.top_idx[i], tops.top_val[i]),
            bottom=_named(analysis.tokens, tops.bottom_idx[i], tops.bottom_val[i]),
        )
        for i in range(n)
    ]
