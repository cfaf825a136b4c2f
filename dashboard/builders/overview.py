"""Tables for the overview page: the model's facts, its kinds, and the cache's contents."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from core.analysis import Analysis
from core.cache import store

PROCESSING_HELP = {
    "post": "normalisation scales (and LayerNorm centring) folded into the reading matrices",
    "raw": "weights exactly as stored",
}


def model_facts(a: Analysis) -> pd.DataFrame:
    """Two columns, ``fact`` and ``value`` (strings): what the model is and how it was read."""
    m = a.meta
    src = a.source.path
    heads = f"{m.n_heads}" + (
        f" ({m.n_kv_heads} key/value heads)" if m.n_kv_heads != m.n_heads else ""
    )
    facts = [
        ("model", m.name),
        ("source", src),
        ("architecture", m.architecture),
        ("layers", m.n_layers),
        ("heads per layer", heads),
        ("d_model", m.d_model),
        ("d_head", m.d_head),
        ("d_mlp", m.d_mlp),
        ("vocabulary", m.d_vocab),
        ("normalisation", {"LN": "LayerNorm", "RMS": "RMSNorm"}.get(m.normalization or "", "none")),
        ("gated MLP", "yes" if m.gated else "no"),
        ("parallel attention + MLP", "yes" if m.parallel_attn_mlp else "no"),
        ("processing", f"{a.settings.processing}: {PROCESSING_HELP[a.settings.processing]}"),
        ("weights hash", m.weights_hash[:16]),
        ("cache", "read from disk" if a.from_cache else "built in this process"),
    ]
    return pd.DataFrame([(k, str(v)) for k, v in facts], columns=["fact", "value"])


def kinds_frame(a: Analysis) -> pd.DataFrame:
    """One row per cached matrix kind: components, rank, projected directions (with cached
    top tokens), near-degenerate singular values, largest σ."""
    rows = []
    for kind, res in a.svd.kinds.items():
        d = res.decomposition
        rows.append(
            {
                "kind": kind,
                "components": len(d.components),
                "rank": d.rank,
                "projected": res.n_projected,
                "degenerate": int(d.degenerate.sum()),
                "largest σ": float(d.S[:, 0].max()),
            }
        )
    return pd.DataFrame(rows)


def cache_frame(cache_dir: Path) -> pd.DataFrame:
    """Entries under ``cache_dir`` (model, processing, kinds, whether the random controls
    are built yet, size_mb, path); empty frame with those columns when there are none."""
    rows = store.list_entries(cache_dir)
    cols = ["model", "processing", "kinds", "controls", "size_mb", "path"]
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)
