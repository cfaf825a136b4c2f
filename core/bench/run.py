"""The performance benchmark behind ``python -m core bench`` (issue 8).

For one model shape (random GPT-2-style weights, :mod:`core.model.random`) it measures:

* ``precompute_s``: the cache build a user runs: processing, every OV head (factored),
  every MLP in/out SVD, top/bottom-``k`` tokens of the first 64 directions of each,
  written to a cache directory; ``controls_s``: the random controls built on first use
  (``precompute_with_controls_s`` is both);
* ``svdinterpreter_loop_s``: the same token tables from a loop over TransformerLens's
  ``SVDInterpreter`` (what a user would otherwise write);
* ``dense_ov_s`` vs ``factored_ov_s``: a dense ``d_model x d_model`` SVD per OV head
  against the batched factored SVD of all heads;
* ``floor_s``: one plain matmul of every projected direction against ``W_U`` with both
  top-k, after a warm-up: the work no method can skip;
* search latency, one head's grid on demand, cache load time and size, peak memory.

Long references can be timed on the first ``reference_layers`` layers and scaled to the
whole model (every layer costs the same); the JSON says when that was done.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: Kinds, directions and tokens the benchmark precomputes (the issue's setting).
KINDS = ("ov", "mlp_in", "mlp_out")
N_PROJECT = 64
K = 20
#: Bytes of one block of the floor's product (rows are chunked to stay under it).
FLOOR_BLOCK_BYTES = 1 << 30


@dataclass(frozen=True)
class BenchOptions:
    """How to run: device, repeats, threads, reference scope, searches, grid heads."""

    device: str = "cpu"
    repeat: int = 1
    threads: int | None = None
    reference_layers: int | None = None
    queries: int = 100
    grid_heads: int = 20
    seed: int = 0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    wall, _, out = _clocked(fn, device)
    return wall, out


def _clocked(fn: Callable[[], Any], device: str) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process (all threads), and ``fn()``.

    On a shared machine the CPU time is the steadier figure: other processes stretch
    the wall clock but not the work this process does (with ``--threads 1`` it is the
    wall time one idle core would take).
    """
    _sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))])


def precompute(model: Any, settings: Any) -> tuple[dict[str, float], Any, Any]:
    """Process, build and save the cache entry of ``model`` (what ``python -m core
    precompute`` does), then build and save its controls (what the first look at a
    spectrum adds); returns stage timings, the processed weights and the built
    :class:`~core.cache.store.ModelSVD` (controls included)."""
    from dataclasses import replace

    from core.analysis import settings_key
    from core.cache import store
    from core.cache.build import build_controls, build_svd
    from core.model.weights import process

    device = settings.torch_device()
    key = settings_key(settings)
    stages: dict[str, float] = {}
    marks: list[tuple[float, float, str]] = []

    def progress(_: float, msg: str) -> None:
        _sync(device)
        marks.append((time.perf_counter(), time.process_time(), msg.split(":")[0]))

    def saved(fn: Callable[[], Any], name: str) -> None:
        progress(1.0, name)
        fn()
        progress(1.0, "end")

    c0, t0 = time.process_time(), time.perf_counter()
    weights = process(model.raw, settings.processing)
    stages["process_s"] = time.perf_counter() - t0
    svd = build_svd(weights, settings, progress)
    saved(lambda: store.save(svd, settings.cache_dir, key), "save")
    stages["total_s"] = time.perf_counter() - t0
    stages["total_cpu_s"] = time.process_time() - c0
    n_main = len(marks)
    svd = replace(svd, controls=build_controls(weights, settings, progress))
    saved(lambda: store.save_controls(svd, settings.cache_dir, key), "save_controls")
    # Each mark starts a stage that runs to the next; "done" and "end" ones are empty.
    for (t_a, c_a, name), (t_b, c_b, _) in zip(marks, marks[1:]):
        if name not in ("done", "end"):
            stages[f"{name.replace(' ', '_')}_s"] = t_b - t_a
            stages[f"{name.replace(' ', '_')}_cpu_s"] = c_b - c_a
    stages["controls_s"] = marks[-1][0] - marks[n_main][0]
    stages["controls_cpu_s"] = marks[-1][1] - marks[n_main][1]
    return stages, weights, svd


def svdinterpreter_loop(
    model: Any, layers: int, k: int = K, n: int = N_PROJECT, device: str = "cpu"
) -> tuple[float, float]:
    """Wall and CPU seconds for the ``SVDInterpreter`` loop over the first ``layers`` layers: each
    head's OV, then ``w_in`` and ``w_out``, ``n`` vectors each, top/bottom-``k`` tokens."""
    from transformer_lens.SVDInterpreter import SVDInterpreter

    interp = SVDInterpreter(model)
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
        wall, cpu, _ = _clocked(run, device)
    return wall, cpu


def dense_ov(weights: Any, layers: int, device: str = "cpu") -> tuple[float, float]:
    """Wall and CPU seconds for a dense ``d_model x d_model`` SVD of every head of the first ``layers``."""

    def run() -> None:
        for layer in range(layers):
            for h in range(weights.meta.n_heads):
                W = weights.W_V[layer, h] @ weights.W_O[layer, h]
                torch.linalg.svd(W, full_matrices=False)

    wall, cpu, _ = _clocked(run, device)
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

    wall, cpu, _ = _clocked(run, device)
    return wall, cpu


def projected_directions(svd: Any, n: int = N_PROJECT) -> torch.Tensor:
    """The first ``n`` token-side directions of every component of the real kinds, as
    rows ``[sum_kinds C * n, d_model]``."""
    parts = []
    for res in svd.kinds.values():
        d = res.decomposition.directions
        m = min(n, d.shape[2])
        parts.append(d[:, :, :m].permute(0, 2, 1).reshape(-1, d.shape[1]))
    return torch.cat(parts).contiguous()


def search_latency(analysis: Any, tokenizer: Any, n_queries: int, seed: int) -> dict[str, Any]:
    """Build the search index once, then time ``n_queries`` searches over every direction
    of the benchmark kinds."""
    import random

    from core.search.engine import build_index, search

    t_index, index = _timed(lambda: build_index(analysis, KINDS, tokenizer), "cpu")
    rng = random.Random(seed)
    words = [t.strip() for t, ok in zip(analysis.tokens.raw, analysis.tokens.alpha) if ok]
    queries = [", ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(n_queries + 3)]
    times: list[float] = []
    cpus: list[float] = []
    for i, q in enumerate(queries):

        def one(q: str = q) -> Any:
            return search(index, q, top=20, kinds=KINDS, k=10)

        dt, ct, _ = _clocked(one, "cpu")
        if i >= 3:  # warm-up
            times.append(dt * 1000)
            cpus.append(ct * 1000)
    return {
        "search_index_s": t_index,
        "search_rows": len(index),
        "search_p50_ms": _median(times),
        "search_p95_ms": _pct(times, 0.95),
        "search_p50_cpu_ms": _median(cpus),
        "search_p95_cpu_ms": _pct(cpus, 0.95),
    }


def grid_head(analysis: Any, n_heads: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of one head's 64 x top/bottom-20 grid with the ``alpha``
    filter (projected on demand from the SVD factors: the cache holds unfiltered ends)."""
    from core.query import directions

    m = analysis.meta
    heads = [(i % m.n_layers, (i * 7) % m.n_heads) for i in range(n_heads + 1)]
    times, cpus = [], []
    for i, (layer, head) in enumerate(heads):

        def one(layer: int = layer, head: int = head) -> Any:
            return directions(analysis, "ov", layer, head, n=N_PROJECT, k=K, filters=("alpha",))

        dt, ct, _ = _clocked(one, "cpu")
        if i:
            times.append(dt * 1000)
            cpus.append(ct * 1000)
    return _median(times), _median(cpus)


def _put(out: dict[str, Any], name: str, runs: list[tuple[float, float]], scale: float = 1.0):
    """Median wall (``name_s``) and CPU (``name_cpu_s``) seconds of ``runs``, scaled."""
    out[f"{name}_s"] = _median([w for w, _ in runs]) * scale
    out[f"{name}_cpu_s"] = _median([c for _, c in runs]) * scale


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_shape(shape: str, opts: BenchOptions) -> dict[str, Any]:
    """Every measurement for one shape; returns the JSON object the CLI prints."""
    from core.analysis import Analysis, settings_key
    from core.cache import store
    from core.model.random import dir_size_mb, make_model
    from core.settings import Settings
    from core.svd.project import token_table

    if opts.threads:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, so the limit reaches it)
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(opts.threads)
        # NumPy/SciPy's BLAS too (the MLP Gram eigendecompositions run there on CPU).
        threadpool_limits(opts.threads)
    load_start = os.getloadavg()[0]
    t_gen = time.perf_counter()
    model = make_model(shape, opts.seed)
    gen_s = time.perf_counter() - t_gen
    meta = model.raw.meta
    L = meta.n_layers
    ref_layers = L if opts.reference_layers is None else max(1, min(L, opts.reference_layers))
    scale = L / ref_layers
    out: dict[str, Any] = {
        "shape": shape,
        "device": opts.device,
        "threads": torch.get_num_threads(),
    }
    out.update(
        n_layers=L,
        d_model=meta.d_model,
        n_heads=meta.n_heads,
        d_vocab=meta.d_vocab,
        model_gen_s=gen_s,
    )
    with tempfile.TemporaryDirectory(prefix="svd-lens-bench-") as tmp:
        settings = Settings(
            model=meta.name,
            device=opts.device,  # type: ignore[arg-type]
            cache_dir=Path(tmp),
            k=K,
            n_project=N_PROJECT,
            kinds=KINDS,
        )
        runs: list[float] = []
        cpus: list[float] = []
        ctrl_runs: list[tuple[float, float]] = []
        stages: dict[str, float] = {}
        weights: Any = None
        svd: Any = None
        for i in range(opts.repeat):
            if i:
                store.remove_entry(settings.cache_dir, meta, settings.processing)
            stages, weights, svd = precompute(model, settings)
            runs.append(stages["total_s"])
            cpus.append(stages["total_cpu_s"])
            ctrl_runs.append((stages["controls_s"], stages["controls_cpu_s"]))
        assert weights is not None and svd is not None
        out["precompute_s"], out["precompute_cpu_s"] = _median(runs), _median(cpus)
        _put(out, "controls", ctrl_runs)
        out["precompute_with_controls_s"] = out["precompute_s"] + out["controls_s"]
        out["precompute_with_controls_cpu_s"] = out["precompute_cpu_s"] + out["controls_cpu_s"]
        out["precompute_runs_s"] = runs
        out["stages_s"] = {k: round(v, 4) for k, v in stages.items()}

        dirs = projected_directions(svd)
        W_U = weights.W_U.to(opts.device)
        dirs_d = dirs.to(opts.device)
        out["projected_rows"] = int(dirs.shape[0])
        _put(out, "floor", [floor(dirs_d, W_U) for _ in range(opts.repeat)])
        if opts.device == "cpu":
            runs_np = [floor(dirs_d, W_U, numpy_blas=True) for _ in range(opts.repeat)]
            _put(out, "floor_openblas", runs_np)
        del dirs_d, W_U, dirs, svd  # the loaded entry below stands in for svd

        loop = [svdinterpreter_loop(model, ref_layers) for _ in range(opts.repeat)]
        _put(out, "svdinterpreter_loop", loop, scale)
        _put(out, "dense_ov", [dense_ov(weights, ref_layers) for _ in range(opts.repeat)], scale)
        from core.svd.decompose import decompose_kind

        fac = [_clocked(lambda: decompose_kind(weights, "ov", 1e-3), "cpu")[:2] for _ in range(3)]
        _put(out, "factored_ov", fac)
        out["reference_layers_timed"] = ref_layers
        for sfx in ("_s", "_cpu_s"):
            c = sfx.replace("_s", "")
            pre, fl = out["precompute" + sfx], out["floor" + sfx]
            loop = out["svdinterpreter_loop" + sfx]
            full = out["precompute_with_controls" + sfx]
            out["speedup_vs_svdinterpreter" + c] = loop / pre
            out["speedup_with_controls_vs_svdinterpreter" + c] = loop / full
            out["precompute_vs_floor" + c] = pre / fl
            out["precompute_with_controls_vs_floor" + c] = full / fl
            if "floor_openblas" + sfx in out:
                out["precompute_vs_floor_openblas" + c] = pre / out["floor_openblas" + sfx]
            out["dense_vs_factored_ov" + c] = out["dense_ov" + sfx] / out["factored_ov" + sfx]

        t_load, loaded = _timed(
            lambda: store.load(
                settings.cache_dir, meta, settings.processing, settings_key(settings)
            ),
            "cpu",
        )
        out["cache_load_s"] = t_load
        out["cache_mb"] = dir_size_mb(
            store.entry_dir(settings.cache_dir, meta, settings.processing)
        )
        t_tok, tokens = _timed(lambda: token_table(model.tokenizer, meta.d_vocab), "cpu")
        out["token_table_s"] = t_tok
        analysis = Analysis(settings, model.raw, weights, loaded, tokens, None, True)
        out["grid_head_ms"], out["grid_head_cpu_ms"] = grid_head(analysis, opts.grid_heads)
        out.update(search_latency(analysis, model.tokenizer, opts.queries, opts.seed))
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_avg"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    return out


def _child(shape: str, opts: BenchOptions, queue: Any) -> None:
    try:
        queue.put(("ok", run_shape(shape, opts)))
    except BaseException as exc:  # reported to the parent, which raises it as CoreError
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_isolated(shape: str, opts: BenchOptions) -> dict[str, Any]:
    """:func:`run_shape` in a fresh process, so each shape's peak memory is its own."""
    import multiprocessing as mp

    from core.errors import CoreError

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(shape, opts, queue))
    proc.start()
    status, value = None, None
    while proc.is_alive() or not queue.empty():
        try:
            status, value = queue.get(timeout=1.0)
            break
        except Exception:  # queue.Empty: keep waiting while the child runs
            continue
    proc.join()
    if status != "ok":
        reason = value or f"the process exited with code {proc.exitcode} (out of memory?)"
        raise CoreError(f"The benchmark of {shape} failed: {reason}; try a smaller shape.")
    assert isinstance(value, dict)
    return value
