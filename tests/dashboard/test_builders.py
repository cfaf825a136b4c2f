"""Builders on real data from a tiny model, without Streamlit."""

from __future__ import annotations

import json
import math
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.query import directions, kind_result
from dashboard.builders import atlas, grid, overview, spectra
from tests.core.reference import unembed_as_read

# ----------------------------------------------------------------------------- grid


def test_grid_one_column_per_direction_with_singular_values(analysis):
    dirs = directions(analysis, "ov", 1, 2, n=6, k=7)
    tokens, values = grid.grid_frames(dirs, "top")
    d = kind_result(analysis, "ov").decomposition
    S = d.S[d.index(1, 2)]
    assert tokens.shape == (7, 6) and values.shape == (7, 6)
    for i, col in enumerate(tokens.columns):
        assert col.startswith(f"#{i} σ=")
        sigma = float(col.split("σ=")[1].split()[0])
        assert sigma == pytest.approx(float(S[i]), rel=1e-3)
    # Ordered by singular value, each column sorted strongest first.
    sig = [float(c.split("σ=")[1].split()[0]) for c in tokens.columns]
    assert sig == sorted(sig, reverse=True)
    assert (values.diff().iloc[1:] <= 1e-7).all().all()
    assert tokens.iloc[0, 0] == dirs[0].top[0][1]


def test_grid_both_ends_and_negative_end(analysis):
    dirs = directions(analysis, "mlp_out", 0, None, n=3, k=4)
    both, vals = grid.grid_frames(dirs, "both")
    assert list(both.columns) == [grid.column_name(d, e) for d in dirs for e in ("top", "bottom")]
    assert (vals[[c for c in vals.columns if c.endswith("−")]] < 0).all().all()
    neg, nvals = grid.grid_frames(dirs, "bottom")
    assert neg.shape == (4, 3)
    assert nvals.iloc[0, 0] == pytest.approx(dirs[0].bottom[0][2])


def test_grid_matches_an_independent_projection(analysis):
    # Top token of the first OV direction of L0 H1 from a plain projection through W_U.
    d = kind_result(analysis, "ov").decomposition
    v = d.directions[d.index(0, 1), :, 0]
    W_R = unembed_as_read(analysis.weights.W_U, analysis.settings.projection)
    logits = v.double() @ W_R
    dirs = directions(analysis, "ov", 0, 1, n=1, k=3)
    tokens, values = grid.grid_frames(dirs, "top")
    assert values.iloc[0, 0] == pytest.approx(float(logits.max()), rel=1e-4)
    assert tokens.iloc[0, 0] == analysis.tokens.display[int(logits.argmax())]


def test_style_grid_colours_cells_and_highlights(analysis):
    dirs = directions(analysis, "ov", 0, 0, n=4, k=5)
    tokens, values = grid.grid_frames(dirs, "both")
    html = grid.style_grid(tokens, values, highlight=2, dirs=dirs).to_html()
    assert "background-color: rgba(31, 119, 180" in html  # positive end, blue
    assert "background-color: rgba(214, 39, 40" in html  # negative end, red
    assert html.count("border: 2px solid #ff8c00") == 2 * 5  # both columns of #2
    styled = grid.style_grid(tokens, values, highlight=2, dirs=dirs).data
    marked = [c for c in styled.columns if c.endswith(grid.MARK)]
    assert len(marked) == 2 and all(c.startswith("#2 ") for c in marked)
    assert list(tokens.columns) == [c.removesuffix(grid.MARK) for c in styled.columns]


def test_shown_directions_put_the_highlight_first(analysis):
    dirs = directions(analysis, "ov", 0, 0, n=8, k=3)
    assert [d.index for d in grid.shown_directions(dirs, 4, None)] == [0, 1, 2, 3]
    assert [d.index for d in grid.shown_directions(dirs, 4, 6)] == [6, 0, 1, 2, 3]
    assert [d.index for d in grid.shown_directions(dirs, 4, 2)] == [2, 0, 1, 3]


def test_grid_downloads_round_trip(analysis):
    dirs = directions(analysis, "ov", 0, 0, n=3, k=4, filters=("alpha",))
    tokens, values = grid.grid_frames(dirs, "top")
    csv = pd.read_csv(StringIO(grid.grid_csv(tokens, values)), index_col=0)
    assert list(csv.columns[::2]) == list(tokens.columns)
    assert np.allclose(csv[f"{tokens.columns[0]} value"], values.iloc[:, 0])
    data = json.loads(grid.grid_json(dirs, {"kind": "ov", "layer": 0, "head": 0}))
    assert data["kind"] == "ov" and len(data["directions"]) == 3
    assert data["directions"][1]["singular_value"] == pytest.approx(dirs[1].singular_value)
    assert data["directions"][0]["top"][0][0] == dirs[0].top[0][0]
    assert all(t[1].lstrip("␣").isalpha() for t in data["directions"][0]["top"])


# -------------------------------------------------------------------------- spectra


def test_spectrum_frame_matches_decomposition(analysis):
    df = spectra.spectrum_frame(analysis, "ov", 1, 3, "component", control=True)
    d = kind_result(analysis, "ov").decomposition
    real = df[~df["control"]]
    assert np.allclose(real["value"].to_numpy(), d.S[d.index(1, 3)].numpy())
    assert real["index"].tolist() == list(range(d.rank)) == list(range(analysis.meta.d_head))
    assert real["degenerate"].tolist() == d.degenerate[d.index(1, 3)].tolist()
    c = kind_result(analysis, "ov", control=True).decomposition
    ctl = df[df["control"]]
    assert np.allclose(ctl["value"].to_numpy(), c.S[c.index(1, 0)].numpy())


def test_spectrum_overlays(analysis):
    m = analysis.meta
    heads = spectra.spectrum_frame(analysis, "qk", 0, 1, "heads", control=False)
    assert heads["series"].nunique() == m.n_heads and not heads["control"].any()
    assert heads.groupby("series")["selected"].first().sum() == 1
    layers = spectra.spectrum_frame(analysis, "mlp_in", 0, None, "layers", control=True)
    assert layers[~layers["control"]]["series"].nunique() == m.n_layers
    assert layers[layers["control"]]["series"].nunique() == m.n_layers
    mlp = kind_result(analysis, "mlp_in").decomposition
    assert len(layers[~layers["control"]]) == m.n_layers * mlp.rank


def test_spectrum_chart_data_and_marks(analysis):
    df = spectra.spectrum_frame(analysis, "embed", 0, None, "component", control=True)
    d = kind_result(analysis, "embed").decomposition
    spec = spectra.spectrum_chart(df, log=True, cut=5).to_dict()
    (data,) = spec["datasets"].values()
    shown = pd.DataFrame(data)
    assert shown["index"].max() == 4 and not shown["control"].any()
    assert np.allclose(shown["value"], d.S[0, :5].numpy())
    layer = spec["layer"]
    scale = layer[0]["encoding"]["y"]["scale"]
    assert scale["type"] == "log"
    # Both panels share one y domain spanning real and control values.
    ctl = spectra.spectrum_chart(df, log=True, cut=5, control=True).to_dict()
    assert ctl["layer"][0]["encoding"]["y"]["scale"]["domain"] == scale["domain"]
    (cdata,) = ctl["datasets"].values()
    c = kind_result(analysis, "embed", control=True).decomposition
    assert np.allclose(pd.DataFrame(cdata)["value"], c.S[0, :5].numpy())
    lo, hi = scale["domain"]
    assert lo <= min(d.S[0, :5].min(), c.S[0, :5].min()) and hi >= d.S[0, 0]
    assert any(ly.get("transform", [{}])[-1].get("filter") == "datum.degenerate" for ly in layer)
    assert {"series", "index", "value"} <= {t["field"] for t in layer[1]["encoding"]["tooltip"]}
    lin = spectra.spectrum_chart(df, log=False).to_dict()
    assert lin["layer"][0]["encoding"]["y"]["scale"]["type"] == "linear"


def test_spectrum_noise_floor_rule_and_unresolvable_marks(analysis, monkeypatch):
    """With a noise table, the floor is sigma (sqrt(m) + sqrt(n)) for a stored matrix,
    values under it are flagged, and both panels draw it as a rule."""
    from core.model.noise import QuantNoise

    d = kind_result(analysis, "mlp_out").decomposition
    S = d.S[d.index(0, None)]
    m = analysis.meta
    floor = float(S[len(S) // 2])
    sigma = floor / (math.sqrt(m.d_mlp) + math.sqrt(m.d_model))
    table = QuantNoise(
        "test", m.n_heads, m.n_kv_heads, {"model.layers.0.mlp.down_proj.weight": {"sigma": sigma}}
    )
    monkeypatch.setattr(spectra, "noise_for_model", lambda spec: table)
    df = spectra.spectrum_frame(analysis, "mlp_out", 0, None, "component", control=True)
    real = df[~df["control"]]
    assert real["floor"].to_numpy() == pytest.approx(floor)
    assert (real["resolvable"] == (real["value"] >= floor)).all()
    assert 0 < (~real["resolvable"]).sum() < len(real)
    for side in (False, True):
        spec = spectra.spectrum_chart(df, log=True, control=side).to_dict()
        rules = [ly for ly in spec["layer"] if ly.get("mark", {}).get("type") == "rule"]
        assert len(rules) == 1
        lo, hi = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
        assert lo < floor < hi
    # Without a table (the tiny model is not quantized): no floor, everything resolvable.
    monkeypatch.setattr(spectra, "noise_for_model", lambda spec: None)
    plain = spectra.spectrum_frame(analysis, "mlp_out", 0, None, "component", control=False)
    assert plain["floor"].isna().all() and plain["resolvable"].all()
    spec = spectra.spectrum_chart(plain, log=True).to_dict()
    assert not [ly for ly in spec["layer"] if ly.get("mark", {}).get("type") == "rule"]


# ---------------------------------------------------------------------------- atlas


def test_effective_rank_reference():
    S = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [3.0, 2.0, 1.0, 0.5]])
    p = np.array([3.0, 2.0, 1.0, 0.5]) / 6.5
    want = [4.0, 1.0, math.exp(-(p * np.log(p)).sum())]
    assert np.allclose(atlas.effective_rank(S).numpy(), want, rtol=1e-5)


def test_atlas_rows_and_tokens(analysis):
    m = analysis.meta
    df = atlas.atlas_frame(analysis, n_dirs=3, n_tokens=4)
    kinds = df["kind"].value_counts().to_dict()
    assert kinds == {"ov": m.n_layers * m.n_heads, "mlp_in": m.n_layers, "mlp_out": m.n_layers}
    row = df[(df["kind"] == "ov") & (df["layer"] == 1) & (df["head"] == 2)].iloc[0]
    assert row["component"] == "L1 H2 OV"
    dirs = directions(analysis, "ov", 1, 2, n=3, k=4)
    assert row["dir 1"] == " · ".join(t[1] for t in dirs[1].top)
    d = kind_result(analysis, "ov").decomposition
    assert row["sigma_max"] == pytest.approx(float(d.S[d.index(1, 2), 0]))
    assert 1.0 <= row["effective_rank"] <= d.rank
    assert df["layer"].is_monotonic_increasing


def test_atlas_filter(analysis):
    df = atlas.atlas_frame(analysis, n_dirs=2, n_tokens=5)
    token = df.iloc[3]["dir 0"].split(" · ")[0]
    hit = atlas.filter_atlas(df, token)
    assert 1 <= len(hit) <= len(df) and 3 in hit.index
    assert atlas.filter_atlas(df, "").equals(df)
    assert atlas.filter_atlas(df, "no-such-token-xyz").empty


def test_atlas_table_sorts_and_opens_rows(analysis):
    df = atlas.atlas_frame(analysis, ("ov", "mlp_in"), n_dirs=2, n_tokens=5)
    by_layer = atlas.atlas_table(df)
    assert list(by_layer["component"]) == list(df["component"])
    assert set(by_layer["head"]) == {"", *(str(h) for h in range(analysis.meta.n_heads))}
    ranked = atlas.atlas_table(df, sort="sigma_max")
    assert ranked["sigma_max"].is_monotonic_decreasing and list(ranked.index) == list(
        range(len(df))
    )
    top = ranked.iloc[0]
    kind, layer, head = atlas.row_component(top)
    assert (kind, layer) == (top["kind"], top["layer"])
    assert head == (int(top["head"]) if kind == "ov" else None)
    mlp = by_layer[by_layer["kind"] == "mlp_in"].iloc[0]
    assert atlas.row_component(mlp) == ("mlp_in", int(mlp["layer"]), None)
    assert set(atlas.SORTS) == {"layer", "effective_rank", "sigma_max"}


# ------------------------------------------------------------------------- overview


def test_overview_tables(analysis, dash_env):
    facts = overview.model_facts(analysis).set_index("fact")["value"]
    assert facts["layers"] == str(analysis.meta.n_layers)
    assert facts["normalisation"] == "LayerNorm"
    assert facts["processing"].startswith("post")
    kinds = overview.kinds_frame(analysis)
    assert set(kinds["kind"]) == set(analysis.svd.kinds)
    cache = overview.cache_frame(Path(dash_env["SVDLENS_CACHE_DIR"]))
    assert "post" in set(cache["processing"])
    assert overview.cache_frame(Path("/nonexistent/dir")).empty
