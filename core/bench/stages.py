"""The measured stages of one benchmark run, each on the live code path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from core.bench.options import FLOOR_BLOCK_BYTES, KINDS, N_PROJECT, K
from core.bench.timing import clocked, median, pct, sync, timed

#: The parts of a kind's stage, as :func:`core.cache.build.build_svd` marks them.
SUBSTAGES = {"SVD": "svd", "projection": "projection", "copy to the CPU": "copy"}


def precompute(model: Any, settings: Any) -> tuple[dict[str, float], Any, Any]:
    """Process, build and save the cache entry of ``model`` (what ``python -m core
    precompute`` does), then build and save its controls (what the first look at a
    spectrum adds); returns stage timings, the processed weights and the built
    :class:`~core.cache.store.ModelSVD` (controls included).
    """
    from dataclasses import replace

    from core.analysis import settings_key
    from core.cache import store
    from core.cache.build import build_and_save, build_controls
    from core.model.weights import process

    device = settings.torch_device()
    key = settings_key(settings)
    stages: dict[str, float] = {}
    marks: list[tuple[float, float, str]] = []

    def progress(_: float, msg: str) -> None:
        sync(device)
        marks.append((time.perf_counter(), time.process_time(), msg))

    def saved(fn: Callable[[], Any], name: str) -> None:
        progress(1.0, name)
        fn()
        progress(1.0, "end")

    c0, t0 = time.process_time(), time.perf_counter()
    weights = process(model.raw, settings.processing)
    stages["process_s"] = time.perf_counter() - t0
    # The live path: each kind's file is written while the next is built, and the
    # "save" stage is what is left to write after the last kind.
    svd = build_and_save(weights, settings, key, progress)
    stages["total_s"] = time.perf_counter() - t0
    stages["total_cpu_s"] = time.process_time() - c0
    n_main = len(marks)
    svd = replace(svd, controls=build_controls(weights, settings, progress))
    saved(lambda: store.save_controls(svd, settings.cache_dir, key), "save_controls")
    # Each mark starts a stage that runs to the next; "done" and "end" ones are empty. A
    # kind's stage ("ov_s") sums its parts, which are also kept ("ov_svd_s", ...).
    for (t_a, c_a, msg), (t_b, c_b, _) in zip(marks, marks[1:]):
        stage, _, part = msg.partition(":")
        if stage in ("done", "end"):
            continue
        names = [stage.replace(" ", "_")]
        if part.strip() in SUBSTAGES:
            names.append(f"{names[0]}_{SUBSTAGES[part.strip()]}")
        for name in names:
            stages[f"{name}_s"] = stages.get(f"{name}_s", 0.0) + t_b - t_a
            stages[f"{name}_cpu_s"] = stages.get(f"{name}_cpu_s", 0.0) + c_b - c_a
    stages["controls_s"] = marks[-1][0] - marks[n_main][0]
    stages["controls_cpu_s"] = marks[-1][1] - marks[n_main][1]
    return stages, weights, svd


def svdinterpreter_loop(
    model: Any, layers: int, k: int = K, n: int = N_PROJECT, device: str = "cpu"
) -> tuple[float, float]:
    """Wall and CPU seconds for the ``SVDInterpreter`` loop over the first ``layers`` layers: each
    head's OV, then ``w_in`` and ``w_out``, ``n`` vectors each, top/bottom-``k`` tokens.
    """
    from types import SimpleNamespace

    from transformer_lens.SVDInterpreter import SVDInterpreter

    # The loop runs where the tool runs: its weights on ``device`` before the clock starts.
    params = {name: t.to(device) for name, t in model.tl_parameters().items()}
    sync(device)
    interp = SVDInterpreter(SimpleNamespace(cfg=model.cfg, tl_parameters=lambda: params))
    heads = model.cfg.n_heads
    n_ov, n_mlp = min(n, model.cfg.d_head), min(n, model.cfg.d_model, model.cfg.d_mlp)

    def run() -> None:
        for layer in range(layers):
            jobs: list[tuple[Any, int | None, int]] = [("OV", h, n_ov) for h in range(heads)]
            jobs += [("w_in", None, n_mlp), ("w_out", None, n_mlp)]
            for vector_type, head, nv in jobs:
                P = interp.get_singular_vectors(
                    vector_type, layer_index=layer, num_vectors=nv, head_index=head
                )[:, 0, :]  # [d_vocab, nv]
                P.topk(k, dim=0)
                P.topk(k, dim=0, largest=False)

    with torch.no_grad():
        wall, cpu, _ = clocked(run, device)
    return wall, cpu


def dense_ov(weights: Any, layers: int, device: str = "cpu") -> tuple[float, float]:
    """Wall and CPU seconds for a dense ``d_model x d_model`` SVD of every head of the first ``layers``."""
    W_V, W_O = weights.W_V[:layers].to(device), weights.W_O[:layers].to(device)
    sync(device)

    def run() -> None:
        for layer in range(layers):
            for h in range(weights.meta.n_heads):
                W = W_V[layer, h] @ W_O[layer, h]
                torch.linalg.svd(W, full_matrices=False)

    wall, cpu, _ = clocked(run, device)
    return wall, cpu


def floor(
    dirs: torch.Tensor, W_U: torch.Tensor, k: int = K, numpy_blas: bool = False
) -> tuple[float, float]:
    """Wall and CPU seconds for ``dirs @ W_U`` with top-``k`` and bottom-``k`` per row (rows chunked
    so one block stays under ``FLOOR_BLOCK_BYTES``), after a warm-up.

    ``numpy_blas``: the product through NumPy's BLAS (OpenBLAS) instead of torch's (MKL),
    the SGEMM the CPU fast path uses.
    """
    device = str(dirs.device)
    rows = max(1, FLOOR_BLOCK_BYTES // (4 * W_U.shape[1]))

    def mm(a: torch.Tensor) -> torch.Tensor:
        if numpy_blas and a.device.type == "cpu":
            return torch.from_numpy(a.numpy() @ W_U.numpy())
        return a @ W_U

    warm = mm(dirs[:256])
    warm.topk(k, dim=1)
    del warm

    def run() -> None:
        for r0 in range(0, dirs.shape[0], rows):
            P = mm(dirs[r0 : r0 + rows])
            P.topk(k, dim=1)
            P.topk(k, dim=1, largest=False)

    wall, cpu, _ = clocked(run, device)
    return wall, cpu


def projected_directions(svd: Any, n: int = N_PROJECT) -> torch.Tensor:
    """The first ``n`` token-side directions of every component of the real kinds, as
    rows ``[sum_kinds C * n, d_model]``.
    """
    parts = []
    for res in svd.kinds.values():
        d = res.decomposition.directions
        m = min(n, d.shape[2])
        parts.append(d[:, :, :m].permute(0, 2, 1).reshape(-1, d.shape[1]))
    return torch.cat(parts).contiguous()


def search_latency(
    analysis: Any, tokenizer: Any, n_queries: int, seed: int, warm_up: bool = True
) -> dict[str, Any]:
    """Build the search index once, then time ``n_queries`` searches over every direction
    of the benchmark kinds, each twice.

    The first call is what a user waits for on typing the query: it computes the
    significance null when no earlier query had the same shape (concept count and
    frequency bins), so its p95 is a null's cost (``search_nulls_computed`` of the
    queries did); the second call (``search_warm_*``) is the search alone. The same
    queries are then timed once more after the dashboard's background warm-up of the
    nulls (``search_after_warm_up_*``, :func:`_after_warm_up`), unless ``warm_up`` is off.
    """
    import random

    from core.search.engine import build_index, search

    t_index, index = timed(lambda: build_index(analysis, KINDS, tokenizer), "cpu")
    rng = random.Random(seed)
    words = [t.strip() for t, ok in zip(analysis.tokens.raw, analysis.tokens.alpha) if ok]
    queries = [", ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(n_queries + 3)]
    first: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    nulls = 0
    for i, q in enumerate(queries):

        def one(q: str = q) -> Any:
            return search(index, q, top=20, kinds=KINDS, k=10)

        before = len(index.nulls)
        dt, ct, _ = clocked(one, "cpu")
        dt2, ct2, _ = clocked(one, "cpu")
        if i >= 3:  # warm-up
            first.append((dt * 1000, ct * 1000))
            warm.append((dt2 * 1000, ct2 * 1000))
            nulls += len(index.nulls) > before
    out: dict[str, Any] = {"search_index_s": t_index, "search_rows": len(index)}
    for name, runs in (("search", first), ("search_warm", warm)):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        out |= {
            f"{name}_p50_ms": median(walls),
            f"{name}_p95_ms": pct(walls, 0.95),
            f"{name}_p50_cpu_ms": median(cpus),
            f"{name}_p95_cpu_ms": pct(cpus, 0.95),
        }
    out |= {"search_nulls_computed": nulls, "search_queries": len(first)}
    return (out | _after_warm_up(index, queries[3:])) if warm_up else out


def _after_warm_up(index: Any, queries: list[str]) -> dict[str, Any]:
    """The first call of each query on a copy of ``index`` whose nulls the background
    warm-up (:func:`core.search.warm.warm_nulls`, as the dashboard runs it) computed first,
    with nothing read from or written to disk; and the warm-up's own time.
    """
    from dataclasses import replace

    from core.search.engine import search
    from core.search.warm import warm_nulls

    warmed = replace(index, store=None, nulls={}, memo={})
    t_warm, shapes = timed(lambda: warm_nulls(warmed, kinds=KINDS), "cpu")
    walls, computed = [], 0
    for q in queries:

        def one(q: str = q) -> Any:
            return search(warmed, q, top=20, kinds=KINDS, k=10)

        before = len(warmed.nulls)
        dt, _, _ = clocked(one, "cpu")
        walls.append(dt * 1000)
        computed += len(warmed.nulls) > before
    return {
        "null_warm_up_s": t_warm,
        "null_warm_up_shapes": shapes,
        "search_after_warm_up_p50_ms": median(walls),
        "search_after_warm_up_p95_ms": pct(walls, 0.95),
        "search_after_warm_up_nulls_computed": computed,
    }


def grid_head(analysis: Any, n_heads: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of one head's 64 x top/bottom-20 grid with the ``alpha``
    filter (projected on demand from the SVD factors: the cache holds unfiltered ends).
    """
    from core.query import directions

    m = analysis.meta
    heads = [(i % m.n_layers, (i * 7) % m.n_heads) for i in range(n_heads + 1)]
    times, cpus = [], []
    for i, (layer, head) in enumerate(heads):

        def one(layer: int = layer, head: int = head) -> Any:
            return directions(analysis, "ov", layer, head, n=N_PROJECT, k=K, filters=("alpha",))

        dt, ct, _ = clocked(one, "cpu")
        if i:
            times.append(dt * 1000)
            cpus.append(ct * 1000)
    return median(times), median(cpus)
