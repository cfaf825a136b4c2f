"""The atlas: one row per component with its first directions' top tokens.

Served entirely from the cached projections (``KindResult.tops``), so building it is a
gather, not a projection.
"""

from __future__ import annotations

import pandas as pd
import torch
from core.analysis import Analysis
from core.query import kind_result
from torch import Tensor

from dashboard.builders.names import component_label

#: Kinds the atlas lists by default (the gate only where the model has one).
ATLAS_KINDS: tuple[str, ...] = ("ov", "mlp_in", "mlp_gate", "mlp_out")
EFFECTIVE_RANK_HELP = (
    "Effective rank = exp(H(p)), the exponential of the Shannon entropy of the "
    "normalised singular values p_i = s_i / Σ s_j (Roy & Vetterli, 2007). It equals the "
    "rank when all singular values are equal and approaches 1 when one dominates."
)


def effective_rank(S: Tensor) -> Tensor:
    """``exp(-Σ p log p)`` with ``p = s / Σ s`` per row.

    Args:
        S: singular values ``[comp, rank]`` (non-negative).

    Returns:
        ``[comp]`` effective ranks in ``[1, rank]``.
    """
    S = S.double().clamp_min(0)
    p = S / S.sum(dim=1, keepdim=True).clamp_min(1e-300)
    h = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(dim=1)
    return h.exp().float()


def atlas_frame(
    a: Analysis, kinds: tuple[str, ...] = ATLAS_KINDS, n_dirs: int = 3, n_tokens: int = 6
) -> pd.DataFrame:
    """One row per component of ``kinds`` (those the cache holds).

    Returns:
        columns ``component`` (e.g. ``L3 H5 OV``), ``kind``, ``layer``, ``head``
        (nullable int), ``sigma_max``, ``effective_rank``, ``rank``, then ``dir 0`` ...
        ``dir {n_dirs-1}``: the direction's top ``n_tokens`` display tokens joined by
        ``" · "`` (empty where the cache projected fewer directions).
    """
    rows = []
    for kind in kinds:
        if kind not in a.svd.kinds:
            continue
        res = kind_result(a, kind)
        d = res.decomposition
        eff = effective_rank(d.S).tolist()
        smax = d.S[:, 0].tolist()
        top = res.tops.top_idx
        n = min(n_dirs, res.n_projected)
        for c, (layer, head) in enumerate(d.components):
            row: dict[str, object] = {
                "component": component_label(kind, layer, head),
                "kind": kind,
                "layer": layer,
                "head": head,
                "sigma_max": smax[c],
                "effective_rank": eff[c],
                "rank": d.rank,
            }
            for i in range(n_dirs):
                if i < n:
                    ids = top[c * res.n_projected + i, :n_tokens].tolist()
                    row[f"dir {i}"] = " · ".join(a.tokens.display[j] for j in ids)
                else:
                    row[f"dir {i}"] = ""
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["head"] = df["head"].astype("Int64")
    # Layer-major, then the kinds in the order given, then head.
    order = df["kind"].map({k: i for i, k in enumerate(kinds)})
    df = df.assign(_o=order).sort_values(["layer", "_o", "head"], kind="stable")
    return df.drop(columns="_o").reset_index(drop=True)


def filter_atlas(df: pd.DataFrame, text: str) -> pd.DataFrame:
    """Rows whose direction tokens contain ``text`` (case-insensitive; ``" "`` matches ``␣``)."""
    text = text.strip()
    if not text or df.empty:
        return df
    needle = text.lower()
    cols = [c for c in df.columns if c.startswith("dir ")]
    hay = df[cols].apply(lambda r: " ".join(r).lower().replace("␣", " "), axis=1)
    alt_hay = df[cols].apply(lambda r: " ".join(r).lower(), axis=1)
    keep = hay.str.contains(needle, regex=False) | alt_hay.str.contains(needle, regex=False)
    return df[keep]


#: Orders of the atlas table, column -> label; ``layer`` keeps the frame's layer-major order.
SORTS: dict[str, str] = {
    "layer": "layer",
    "effective_rank": "effective rank",
    "sigma_max": "largest σ",
}


def atlas_table(df: pd.DataFrame, text: str = "", sort: str = "layer") -> pd.DataFrame:
    """The rows the atlas page shows: :func:`filter_atlas`'s, ordered by ``sort`` (a key
    of :data:`SORTS`; other than ``layer``, largest first), numbered from 0, with
    ``head`` as text (empty for MLP and embedding rows)."""
    shown = filter_atlas(df, text)
    if not shown.empty and sort != "layer":
        shown = shown.sort_values(sort, ascending=False, kind="stable")
    shown = shown.reset_index(drop=True)
    if "head" in shown:
        shown["head"] = shown["head"].astype("string").fillna("")
    return shown


def row_component(row: pd.Series) -> tuple[str, int, int | None]:
    """The ``(kind, layer, head)`` of an :func:`atlas_table` row."""
    head = str(row["head"])
    return str(row["kind"]), int(row["layer"]), int(head) if head.isdigit() else None


def method_atlas_frame(
    a: Analysis, method: str, kinds: tuple[str, ...], n_dirs: int = 3, n_tokens: int = 6
) -> pd.DataFrame:
    """:func:`atlas_frame` for a decomposition beyond the SVD: one row per matrix and
    layer of ``kinds`` that ``method`` reads and has built (builds are not started here).

    ``sigma_max`` is then the strongest component's share of squared norm,
    ``effective_rank`` that of the shares, ``rank`` the number of components.
    """
    from core.decompose import METHOD_MATRICES
    from core.query import method_components, method_directions

    rows = []
    for kind in kinds:
        if kind not in METHOD_MATRICES.get(method, ()):
            continue
        for layer in range(1 if kind == "embed" else a.meta.n_layers):
            c = method_components(a, method, kind, layer, build=False)
            if c is None:
                continue
            dirs = method_directions(a, method, kind, layer, n=n_dirs, k=n_tokens)
            row: dict[str, object] = {
                "component": f"L{layer} OV heads"
                if kind == "ov"
                else component_label(kind, layer, None),
                "kind": kind,
                "layer": layer,
                "head": None,
                "sigma_max": float(c.strength[0]),
                "effective_rank": float(effective_rank(c.strength[None].sqrt())[0]),
                "rank": c.n,
            }
            for i in range(n_dirs):
                row[f"dir {i}"] = " · ".join(t for _, t, _ in dirs[i].top) if i < len(dirs) else ""
            rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["head"] = df["head"].astype("Int64")
    return df
