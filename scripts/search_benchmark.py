#!/usr/bin/env python
"""Self-retrieval benchmark and query latency for semantic search.

Self-retrieval: for every direction (or a seeded sample) of the searched kinds, the
query is the direction's own top-k tokens; we report the mean cosine between the
embedded query and the source, and recall@1/@10 of the source among all directions
(see core/search/retrieval.py: the queries run through the live ranking). The post reports about 0.5 cosine for pinv on this task.

Latency: median wall time of one query over every direction of a GPT-2-medium-shaped
model (24 layers, 16 heads, d_model 1024, d_mlp 4096, vocab 50257; random weights, no
download), once the index is built.

Examples::

    .venv/bin/python scripts/search_benchmark.py retrieval --model default
    .venv/bin/python scripts/search_benchmark.py retrieval --random small
    .venv/bin/python scripts/search_benchmark.py latency
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.analysis import Analysis, analysis_from_weights, open_analysis
from core.cache.store import KindResult, ModelSVD
from core.model.random import number_tokenizer, random_weights
from core.model.weights import process
from core.search.embed import METHODS
from core.search.engine import build_index, search, similarities
from core.search.retrieval import self_retrieval
from core.settings import Settings
from core.svd.decompose import decompose_kind
from core.svd.project import TopTokens, token_table

#: Random model shapes: (layers, heads, d_model, d_mlp, vocab).
SHAPES = {
    "small": (4, 8, 256, 1024, 8192),
    "medium": (24, 16, 1024, 4096, 50257),
}
KINDS = ("ov", "mlp_in", "mlp_out")


def random_analysis(
    shape: str, cache: Path, n_project: int | None = None, trained_like: bool = False
):
    """A random model's analysis through the real pipeline (SVD, projection, cache).

    ``trained_like``: a clustered unembedding with a spectrum falling 1.5 decades (see
    ``core.model.random.random_weights``) instead of an isotropic one.
    """
    L, H, d, m, V = SHAPES[shape]
    extra = {"clusters": 256, "decay": 1.5} if trained_like else {}
    raw = random_weights(L, H, d, m, V, name=f"random-{shape}", **extra)
    settings = Settings(
        model=f"random-{shape}", cache_dir=cache, kinds=KINDS, device="cpu", n_project=n_project
    )
    return analysis_from_weights(raw, number_tokenizer(V), settings, use_cache=False)


def synthetic_analysis(shape: str, k: int = 50) -> Analysis:
    """A random model's analysis without controls or projections, for timing queries.

    Decompositions are real; the cached top tokens every direction would have are
    random ids (projecting 74k directions through a 50k vocabulary is hours of CPU), so
    reading them costs what reading real ones does.
    """
    L, H, d, m, V = SHAPES[shape]
    raw = random_weights(L, H, d, m, V, name=f"random-{shape}")
    w = process(raw, "post")
    g = torch.Generator().manual_seed(0)
    kinds = {}
    for kind in KINDS:
        dec = decompose_kind(w, kind, 1e-3)
        n = len(dec.components) * dec.rank
        idx = torch.randint(0, V, (n, k), generator=g)
        val = torch.randn(n, k, generator=g).abs().sort(dim=1, descending=True).values
        tops = TopTokens(idx, val, idx.flip(1), -val)
        kinds[kind] = KindResult(dec, tops, dec.rank)
    svd = ModelSVD(w.meta, "post", k, kinds, {})
    settings = Settings(model=f"random-{shape}", kinds=KINDS, device="cpu")
    return Analysis.of(settings, raw, w, svd, token_table(number_tokenizer(V), V))


def retrieval(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args.random:
            a = random_analysis(args.random, Path(tmp), trained_like=args.trained_like)
            name = f"random-{args.random}" + ("-tl" if args.trained_like else "")
        else:
            kw = {} if args.cache_dir is None else {"cache_dir": args.cache_dir}
            a = open_analysis(Settings(model=args.model, processing=args.processing, **kw))
            name = args.model
        index = build_index(a)
        rows = []
        for k in args.k:
            for s in self_retrieval(index, METHODS, k=k, sample=args.sample, seed=args.seed):
                rows.append({"model": name, "processing": a.settings.processing, **s.to_json()})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'model':<22} {'k':>3} {'method':<6} {'n':>6} {'mean cos':>9} {'R@1':>6} {'R@10':>6}")
    for r in rows:
        print(
            f"{r['model']:<22} {r['k']:>3} {r['method']:<6} {r['n_sources']:>6} "
            f"{r['mean_cosine']:>9.3f} {r['recall@1']:>6.3f} {r['recall@10']:>6.3f}"
        )


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def latency(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    a = synthetic_analysis(args.shape)
    t1 = time.perf_counter()
    index = build_index(a, tokenizer=number_tokenizer(a.meta.d_vocab))
    t2 = time.perf_counter()
    print(f"shape {args.shape}: {len(index):,} directions x d_model {index.d_model}")
    print(f"decompose {t1 - t0:.1f} s, build index {t2 - t1:.1f} s", flush=True)
    q = torch.nn.functional.normalize(torch.randn(index.d_model), dim=0)
    query = "w12, w7, w3000"  # three concepts, six tokens (with and without a space)
    for method in METHODS:
        # Threshold 0: always 20 hits, so describing them (cached tokens) is timed too.
        med, best = _median_ms(
            lambda m=method: search(index, query, m, threshold=0.0, top=20, k=10), args.repeats
        )
        print(f"search {method:<6} (top 20, tokens included): median {med:.1f} ms, min {best:.1f}")
    med, best = _median_ms(lambda: similarities(index, q, index.kinds), args.repeats)
    print(f"matrix-vector product alone (bfloat16 index): median {med:.1f} ms, min {best:.1f}")
    v32 = index.vectors.float()
    med, best = _median_ms(lambda: v32 @ q, args.repeats)
    print(f"matrix-vector product alone (float32 copy): median {med:.1f} ms, min {best:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("retrieval", help="self-retrieval benchmark")
    r.add_argument("--model", default="default")
    r.add_argument("--random", choices=sorted(SHAPES), default=None, help="a random model")
    r.add_argument(
        "--trained-like",
        action="store_true",
        help="with --random: clustered, anisotropic unembedding (tied)",
    )
    r.add_argument("--processing", choices=("raw", "post"), default="post")
    r.add_argument("--cache-dir", type=Path, default=None)
    r.add_argument("--k", type=int, nargs="+", default=[10], help="query tokens per source")
    r.add_argument("--sample", type=int, default=None, help="sources (default: all)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=retrieval)
    lat = sub.add_parser("latency", help="query latency on a GPT-2-medium-shaped model")
    lat.add_argument("--shape", choices=sorted(SHAPES), default="medium")
    lat.add_argument("--repeats", type=int, default=30)
    lat.add_argument("--threads", type=int, default=2)
    lat.set_defaults(func=latency)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
