"""Side-by-side GPU timings of the two routes each decomposition could take, on random
weights of GPT-2-medium and GPT-2-XL shapes: OV heads by batched QR (``factored_svd``)
against batched Cholesky (``gram_factored_svd``), and MLP Gram eigendecompositions one
matrix at a time against batched groups (``batched_gram_eighs``) and against one matrix at
a time on each of several CUDA streams, one host thread each (cuSOLVER's ``syevd`` runs
one matrix per call and is latency-bound at these sizes, so streams are the one way left
to run them side by side; on the CPU the threads share the BLAS), one at a time through
MAGMA rather than cuSOLVER (CUDA only), and on host threads with the Grams formed on the
device (route ``host``, :mod:`core.svd.gram`), alone and while the OV heads are
decomposed. Prints one JSON line per shape; run by ``scripts/gpu_bench.sh`` before the
benchmark (``--device cpu --shapes tiny`` for a smoke run). ``--precompute PAIRS`` times
the whole precompute with each Gram route in turn instead (one JSON line per run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.svd.decompose import factored_svd, gram_factored_svd
from core.svd.gram import HostGrams, batched_gram_eighs, gram_eigh

SHAPES = {"gpt2-medium": (24, 16, 1024), "gpt2-xl": (48, 25, 1600), "tiny": (2, 2, 64)}


def clock(fn: Callable[[], object], device: str, reps: int = 3) -> float:
    """Median wall seconds of ``fn`` after one warm-up, synchronised on ``device``."""
    fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def on_streams(W: torch.Tensor, n_streams: int, dev: str) -> list[object]:
    """``gram_eigh`` of every ``W[i]``, matrices dealt round-robin to ``n_streams``
    threads, each issuing on its own CUDA stream (plain threads on the CPU)."""
    out: list[object] = [None] * len(W)

    def work(j: int) -> None:
        stream = torch.cuda.Stream() if dev == "cuda" else None
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for i in range(j, len(W), n_streams):
                out[i] = gram_eigh(W[i], "in")
        if stream is not None:
            stream.synchronize()

    threads = [threading.Thread(target=work, args=(j,)) for j in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def with_magma(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with MAGMA as torch's CUDA linear-algebra backend (its hybrid
    CPU-and-GPU ``syevd`` against cuSOLVER's), the previous backend restored after."""

    def run() -> object:
        before = torch.backends.cuda.preferred_linalg_library()
        torch.backends.cuda.preferred_linalg_library("magma")
        try:
            return fn()
        finally:
            torch.backends.cuda.preferred_linalg_library(before)

    return run


def on_host(
    W: torch.Tensor, both: bool = False, heads: tuple[torch.Tensor, torch.Tensor] | None = None
) -> object:
    """Route ``host`` (:class:`core.svd.gram.HostGrams`): every ``W[i]``'s Gram solved on
    host threads (twice with ``both``, as two MLP kinds), the OV ``heads`` decomposed on
    the device meanwhile."""
    mats = {"in": (W, "in")} | ({"out": (W, "in")} if both else {})
    with HostGrams(mats) as grams:
        if heads is not None:
            gram_factored_svd(*heads)
        return [grams.take(k) for k in mats]


def time_shape(name: str, dev: str) -> dict[str, object]:
    """The timings for one shape."""
    L, H, d = SHAPES[name]
    g = torch.Generator().manual_seed(0)
    A = (torch.randn(L * H, d, 64, generator=g) * 0.02).to(dev)
    B = (torch.randn(L * H, 64, d, generator=g) * 0.02).to(dev)
    W = (torch.randn(L, d, 4 * d, generator=g) * 0.02).to(dev)
    return {
        "shape": name,
        "device": dev,
        "ov_qr_s": clock(lambda: factored_svd(A, B), dev),
        "ov_cholesky_s": clock(lambda: gram_factored_svd(A, B), dev),
        "mlp_one_by_one_s": clock(lambda: [gram_eigh(W[i], "in") for i in range(L)], dev),
        "mlp_batched_s": clock(lambda: batched_gram_eighs(W, "in"), dev),
        **{f"mlp_{n}_streams_s": clock(lambda n=n: on_streams(W, n, dev), dev) for n in (2, 4, 8)},
        "mlp_host_s": clock(lambda: on_host(W), dev),
        # The precompute's two orders: the heads, then two MLP kinds' solves on the
        # device (route "device"), against the same with the solves on host threads
        # started first (route "host").
        "ov_then_mlp_s": clock(
            lambda: (gram_factored_svd(A, B), [batched_gram_eighs(W, s) for s in ("in", "in")]), dev
        ),
        "ov_with_host_mlp_s": clock(lambda: on_host(W, both=True, heads=(A, B)), dev),
    } | (
        {"mlp_magma_s": clock(with_magma(lambda: [gram_eigh(W[i], "in") for i in range(L)]), dev)}
        if dev == "cuda"
        else {}
    )


def precompute_routes(name: str, dev: str, pairs: int) -> list[dict[str, object]]:
    """The whole precompute of a random model of shape ``name`` (the live path,
    :func:`core.bench.stages.precompute`, with the benchmark's settings), each Gram route
    in turn, ``pairs`` times (the first pair also pays the device's warm-up)."""
    import tempfile

    from core.bench.options import KINDS, N_PROJECT, K
    from core.bench.stages import precompute
    from core.model.random import make_model
    from core.settings import Settings

    model = make_model(name)
    out: list[dict[str, object]] = []
    for i in range(pairs):
        for route in ("device", "host") if i % 2 == 0 else ("host", "device"):
            with tempfile.TemporaryDirectory(prefix="svd-lens-routes-") as tmp:
                s = Settings(
                    model=model.raw.meta.name,
                    device=dev,  # type: ignore[arg-type]
                    cache_dir=Path(tmp),
                    k=K,
                    n_project=N_PROJECT,
                    kinds=KINDS,
                    gram_eigh=route,  # type: ignore[arg-type]
                )
                stages, _, _ = precompute(model, s)
            out.append({"shape": name, "device": dev, "route": route, "pair": i, **stages})
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--shapes", default="gpt2-medium,gpt2-xl")
    ap.add_argument(
        "--precompute",
        type=int,
        default=0,
        metavar="PAIRS",
        help="instead: the whole precompute with each Gram route in turn, PAIRS times",
    )
    args = ap.parse_args()
    for name in args.shapes.split(","):
        if args.precompute:
            precompute_routes(name, args.device, args.precompute)
        else:
            print(json.dumps(time_shape(name, args.device)), flush=True)


if __name__ == "__main__":
    main()
