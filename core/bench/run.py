"""The performance benchmark behind ``python -m core bench``.

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
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from core.bench.options import KINDS, N_PROJECT, BenchOptions, K
from core.bench.stages import (
    dense_ov,
    floor,
    grid_head,
    precompute,
    projected_directions,
    search_latency,
    svdinterpreter_loop,
)
from core.bench.timing import clocked, median, peak_rss_mb, put, timed


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
        "gram_eigh": opts.gram_eigh,
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
            gram_eigh=opts.gram_eigh,  # type: ignore[arg-type]
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
        out["precompute_s"], out["precompute_cpu_s"] = median(runs), median(cpus)
        put(out, "controls", ctrl_runs)
        out["precompute_with_controls_s"] = out["precompute_s"] + out["controls_s"]
        out["precompute_with_controls_cpu_s"] = out["precompute_cpu_s"] + out["controls_cpu_s"]
        out["precompute_runs_s"] = runs
        out["stages_s"] = {k: round(v, 4) for k, v in stages.items()}

        dirs = projected_directions(svd)
        W_U = weights.W_U.to(opts.device)
        dirs_d = dirs.to(opts.device)
        out["projected_rows"] = int(dirs.shape[0])
        put(out, "floor", [floor(dirs_d, W_U) for _ in range(opts.repeat)])
        if opts.device == "cpu":
            runs_np = [floor(dirs_d, W_U, numpy_blas=True) for _ in range(opts.repeat)]
            put(out, "floor_openblas", runs_np)
        del dirs_d, W_U, dirs, svd  # the loaded entry below stands in for svd

        dev = opts.device
        loop = [svdinterpreter_loop(model, ref_layers, device=dev) for _ in range(opts.repeat)]
        put(out, "svdinterpreter_loop", loop, scale)
        dense = [dense_ov(weights, ref_layers, dev) for _ in range(opts.repeat)]
        put(out, "dense_ov", dense, scale)
        from core.svd.decompose import decompose_kind

        # On the benchmark's device, like the dense SVDs it is compared with.
        ov_w = weights.replace(W_V=weights.W_V.to(dev), W_O=weights.W_O.to(dev))
        fac = [clocked(lambda: decompose_kind(ov_w, "ov", 1e-3), dev)[:2] for _ in range(3)]
        put(out, "factored_ov", fac)
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

        t_load, loaded = timed(
            lambda: store.load(
                settings.cache_dir, meta, settings.processing, settings_key(settings)
            ),
            "cpu",
        )
        out["cache_load_s"] = t_load
        out["cache_mb"] = dir_size_mb(
            store.entry_dir(settings.cache_dir, meta, settings.processing)
        )
        t_tok, tokens = timed(lambda: token_table(model.tokenizer, meta.d_vocab), "cpu")
        out["token_table_s"] = t_tok
        analysis = Analysis.of(settings, model.raw, weights, loaded, tokens, None, True)
        out["grid_head_ms"], out["grid_head_cpu_ms"] = grid_head(analysis, opts.grid_heads)
        out.update(
            search_latency(analysis, model.tokenizer, opts.queries, opts.seed, opts.null_warm_up)
        )
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
