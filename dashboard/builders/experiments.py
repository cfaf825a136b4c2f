"""Experiments: truncation (loss recovered against kept rank, per layer, and a summary),
knockout of the labelled-interpretable directions against matched and random sets, and
the per-layer input-token probe.

Each frame is long form (truncation: one row per layer, k and method; knockout: per set
and measure); the charts and summaries are built from it, so a page renders what one
cached run computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
from core.analysis import Analysis
from core.edit.prompts import reference_ids, reference_texts
from core.experiments import TruncationCost, truncation_sweep
from core.experiments.truncation import MIN_GAP
from core.progress import Progress, quiet
from core.settings import KIND_NAMES

SVD, RANDOM = "top-k singular directions", "k random singular directions"


def spans(values: Sequence[int]) -> str:
    """Whole numbers as runs, e.g. ``0–3, 7, 9–10``."""
    out: list[str] = []
    vals = sorted(set(values))
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}–{vals[j]}")
        i = j + 1
    return ", ".join(out)


def latest_caption(name: str, args: tuple[Any, ...]) -> str:
    """What the shown run of ``name`` is when it is the server's last one (a session
    that has not pressed that button yet shows the last run started on the model)."""
    if name == "truncation":
        kind, layers, ks, draws = args
        what = (
            f"{KIND_NAMES[kind]}, layers {spans(layers)}, k = {', '.join(map(str, ks))}, "
            f"{draws} random draw{'' if draws == 1 else 's'}"
        )
    elif name == "knockout":
        kinds, layers, labeller, draws = args
        what = (
            f"{' and '.join(KIND_NAMES[k] for k in kinds)}, layers {spans(layers)}, "
            f"{labeller} labels, {draws} random set{'' if draws == 1 else 's'}"
        )
    else:
        what = "of the previous token" if args[0] else "of the current token"
    return (
        f"Below: the last {name} run on this server ({what}). Press the button to run your choices."
    )


def cost_text(cost: TruncationCost) -> str:
    """What pressing Run will compute, in one sentence (a run's time grows with it)."""
    plural = "" if cost.passes == 1 else "es"
    return (
        f"Run makes {cost.passes:,} edited forward pass{plural} over the reference windows, "
        f"each from its layer on: the work of about {cost.whole_passes:,.0f} passes of the "
        "whole model, after one unedited pass. Fewer layers, ranks or draws make it shorter."
    )


def truncation_frame(
    a: Analysis,
    kind: str,
    layers: tuple[int, ...],
    ks: tuple[int, ...],
    draws: int,
    progress: Progress = quiet,
) -> pd.DataFrame:
    """Run the truncation sweep of ``kind`` over ``layers`` on the reference text.

    Returns:
        columns ``layer``, ``k``, ``method`` (:data:`SVD` or :data:`RANDOM`, the latter
        averaged over ``draws``), ``recovered`` (loss recovered), ``loss``, ``loss_orig``,
        ``loss_zero``, ``rank``; sorted by layer, method, k.
    """
    progress(0.0, "loading the model")  # a first message: the load takes seconds
    assert a.model is not None
    ids = reference_ids(a.model.tokenizer, reference_texts())
    rows = []
    for c in truncation_sweep(a, kind, list(layers), ids, ks, draws, progress=progress):
        common = {"layer": c.layer, "loss_orig": c.loss_orig, "loss_zero": c.loss_zero}
        common["rank"] = c.rank
        rec, loss = c.recovered_svd.tolist(), c.loss_svd.tolist()
        for j, k in enumerate(c.ks.tolist()):
            rows.append({**common, "k": k, "method": SVD, "recovered": rec[j], "loss": loss[j]})
            if draws:
                r = float(c.recovered_random[:, j].mean())
                lr = float(c.loss_random[:, j].mean())
                rows.append({**common, "k": k, "method": RANDOM, "recovered": r, "loss": lr})
    return pd.DataFrame(rows).sort_values(["layer", "method", "k"], ignore_index=True)


def truncation_chart(df: pd.DataFrame) -> alt.Chart:
    """Loss recovered against k (symlog axis), a line per layer, dashed for random."""
    return (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("k:Q", scale=alt.Scale(type="symlog"), title="kept rank k"),
            y=alt.Y(
                "recovered:Q",
                title="loss recovered",
                scale=alt.Scale(domain=[min(-0.25, float(df["recovered"].min())), 1.05]),
            ),
            color=alt.Color("layer:O", title="layer"),
            strokeDash=alt.StrokeDash(
                "method:N",
                title=None,
                # Solid for the singular directions, dashed for the random baseline.
                scale=alt.Scale(domain=[SVD, RANDOM], range=[[1, 0], [5, 4]]),
                legend=alt.Legend(
                    orient="bottom",
                    symbolType="stroke",
                    symbolStrokeColor="gray",
                    symbolStrokeWidth=2,
                    labelLimit=300,
                ),
            ),
            tooltip=["layer", "k", "method", alt.Tooltip("recovered:Q", format=".3f"), "loss"],
        )
        .properties(height=360)
    )


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per layer: loss unedited and zeroed, and the smallest grid k recovering 90% / 99%
    with the top-k directions (empty where none does, or where zeroing raises the loss by
    less than ``MIN_GAP`` nats: then loss recovered is a ratio of noise)."""
    svd = df[df["method"] == SVD]
    out = []
    for layer, g in svd.groupby("layer", sort=True):
        gap = float(g["loss_zero"].iloc[0] - g["loss_orig"].iloc[0])

        def k_at(f: float, g: pd.DataFrame = g, gap: float = gap) -> int | None:
            if gap < MIN_GAP:
                return None
            ok = g[g["recovered"] >= f]["k"]
            return int(ok.min()) if len(ok) else None

        out.append(
            {
                "layer": int(layer),
                "rank": int(g["rank"].iloc[0]),
                "loss": float(g["loss_orig"].iloc[0]),
                "loss zeroed": float(g["loss_zero"].iloc[0]),
                "k for 90%": k_at(0.9),
                "k for 99%": k_at(0.99),
            }
        )
    return pd.DataFrame(out)


def probe_frame(
    a: Analysis, previous: bool, windows: int = 64, progress: Progress = quiet
) -> pd.DataFrame:
    """Per-layer input-token probe on the reference text.

    Returns:
        columns ``layer``, ``measure`` (``top-1``, ``top-10``, ``chance``), ``accuracy``;
        plus, per layer, ``embed_cosine``, ``embed_cosine_shuffled``, ``subspace_share``,
        ``subspace_chance`` (repeated on each of its rows).
    """
    from core.edit.hf import plain_model
    from core.experiments import probe_layers

    progress(0.0, "loading the model")  # a first message: the load takes seconds
    assert a.model is not None
    ids = reference_ids(a.model.tokenizer, reference_texts(), seq_len=64, n_seqs=windows)
    res = probe_layers(plain_model(a), ids, a.raw.W_E, previous=previous, progress=progress)
    rows = []
    for j, layer in enumerate(res.layers.tolist()):
        common = {
            "layer": layer,
            "embed_cosine": float(res.embed_cosine[j]),
            "embed_cosine_shuffled": float(res.embed_cosine_shuffled[j]),
            "subspace_share": float(res.subspace_share[j]),
            "subspace_chance": res.subspace_chance,
        }
        for name, value in (
            ("top-1", float(res.top1[j])),
            ("top-10", float(res.top10[j])),
            ("chance", res.chance),
        ):
            rows.append({**common, "measure": name, "accuracy": value})
    return pd.DataFrame(rows)


def probe_chart(df: pd.DataFrame) -> alt.Chart:
    """Held-out probe accuracy against layer; chance dashed."""
    return (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "layer:O",
                title="layer (residual stream entering the block)",
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="held-out accuracy"),
            color=alt.Color("measure:N", title=None),
            strokeDash=alt.condition(
                alt.datum.measure == "chance", alt.value([4, 3]), alt.value([1, 0])
            ),
            tooltip=["layer", "measure", alt.Tooltip("accuracy:Q", format=".3f")],
        )
        .properties(height=300)
    )


#: The knockout measures, in the chart's column order: (frame column, title).
KNOCKOUT_MEASURES = (
    ("loss_change", "loss change (nats)"),
    ("kl", "KL on reference text (nats)"),
    ("dlogprob_own", "Δ log p, own top tokens"),
    ("dlogprob_target", "Δ log p, interpretable set's tokens"),
)
KNOCKOUT_SETS = ("interpretable", "matched", "random")


def knockout_frame(
    a: Analysis,
    kinds: tuple[str, ...],
    layers: tuple[int, ...],
    labeller: str,
    draws: int,
    progress: Progress = quiet,
) -> pd.DataFrame:
    """Knock out the directions labelled interpretable in ``kinds`` of ``layers``, and
    the matched and random controls, on the reference text (cached on disk; offline:
    components without verdicts are labelled first).

    Returns:
        one row per set and measure: ``set`` (:data:`KNOCKOUT_SETS`), ``draw``,
        ``measure`` (titles of :data:`KNOCKOUT_MEASURES`), ``value`` (nan: no position),
        ``n_deleted``, ``sigma_sum``, ``n_positions`` (positions a log-prob change is
        averaged over; empty for loss and KL), ``loss_orig``.
    """
    from core.experiments import KnockoutOptions, cached_knockout

    progress(0.0, "loading the model")  # a first message: the load takes seconds
    assert a.model is not None
    ids = reference_ids(a.model.tokenizer, reference_texts())
    opts = KnockoutOptions(kinds=kinds, layers=layers, labeller=labeller, draws=draws)
    res, _ = cached_knockout(a, ids, opts, progress)
    rows = []
    for r in res.rows():
        positions = {"dlogprob_own": r["n_own"], "dlogprob_target": res.n_target}
        for col, title in KNOCKOUT_MEASURES:
            rows.append(
                {
                    "set": r["set"],
                    "draw": r["draw"],
                    "measure": title,
                    "value": float("nan") if r[col] is None else r[col],
                    "n_deleted": r["n_deleted"],
                    "sigma_sum": r["sigma_sum"],
                    "n_positions": positions.get(col),
                    "loss_orig": res.loss_orig,
                }
            )
    return pd.DataFrame(rows)


def knockout_chart(df: pd.DataFrame) -> alt.FacetChart:
    """Per measure (two by two, each its own y scale), a bar per set (random: the mean
    of its draws) and a point per draw."""
    order = [t for _, t in KNOCKOUT_MEASURES]
    color = alt.Color(
        "set:N",
        scale=alt.Scale(domain=list(KNOCKOUT_SETS), range=["#d62728", "#1f77b4", "#7f7f7f"]),
        legend=None,
    )
    # Every set named under its bar: Vega-Lite otherwise drops labels it thinks overlap.
    axis = alt.Axis(labelAngle=0, labelOverlap=False, labelFontSize=11)
    x = alt.X("set:N", sort=list(KNOCKOUT_SETS), title=None, axis=axis)
    bars = (
        alt.Chart()
        .mark_bar(opacity=0.7)
        .encode(
            x=x,
            y=alt.Y("mean(value):Q", title=None),
            color=color,
            tooltip=["set", alt.Tooltip("mean(value):Q", title="mean", format=".4f")],
        )
    )
    points = (
        alt.Chart()
        .mark_point(filled=True, color="black", size=30)
        .encode(
            x=x,
            y="value:Q",
            tooltip=[
                "set",
                "draw",
                alt.Tooltip("value:Q", format=".4f"),
                "n_deleted",
                alt.Tooltip("sigma_sum:Q", format=".3f"),
                "n_positions",
            ],
        )
    )
    return (
        alt.layer(bars, points, data=df)
        .properties(width=330, height=200)
        # Two by two: four columns side by side overflow the page's width.
        .facet(
            facet=alt.Facet("measure:N", sort=order, title=None, header=alt.Header(labelLimit=300)),
            columns=2,
        )
        .resolve_scale(y="independent")
    )
