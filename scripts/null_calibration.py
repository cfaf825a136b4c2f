"""How often a random query's best search hit is significant, by how frequent its words
are, judged against a null drawn uniformly from the model's whole words and against the
frequency-matched null that search uses (README, "Semantic search").

    python scripts/null_calibration.py --model models/smollm2-135m --draws 200

For each Zipf bin of ``core.search.null.ZIPF_EDGES``: ``--draws`` random queries of
``--concepts`` words of that bin (another seed than the nulls'), each ranked over the
default kinds with the default method; the share whose best hit has p <= 0.05. A
calibrated null gives about 0.05 in every bin. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.analysis import open_analysis
from core.search.embed import DEFAULT_METHOD
from core.search.engine import DEFAULT_KINDS, DEFAULT_THRESHOLD, build_index, rank, search
from core.search.index import default_kinds
from core.search.null import (
    ALPHA,
    MIN_BIN,
    ZIPF_EDGES,
    null_for,
    random_queries,
    word_pool,
    words_by_bin,
)
from core.settings import Settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--concepts", type=int, default=1)
    p.add_argument("--cache-dir", type=Path, default=Settings().cache_dir)
    args = p.parse_args()
    t0 = time.time()
    a = open_analysis(Settings(model=args.model, cache_dir=args.cache_dir))
    index = build_index(a, DEFAULT_KINDS)
    kinds = default_kinds(index)
    raw, n = index.tokens.raw, args.concepts
    uniform = null_for(index, n, DEFAULT_METHOD, kinds, DEFAULT_THRESHOLD, bins=None)
    assert uniform is not None
    pool = word_pool(raw, index.tokens.trained)
    by_bin = words_by_bin(raw, pool)
    sizes = [len(by_bin.get(b, [])) for b in range(len(ZIPF_EDGES) + 1)]
    bins = []
    for b, size in enumerate(sizes):
        lo = ZIPF_EDGES[b - 1] if b else 0.0
        hi = ZIPF_EDGES[b] if b < len(ZIPF_EDGES) else None  # none above
        row: dict[str, object] = {"bin": b, "zipf": [lo, hi], "words": size}
        if size < MIN_BIN:
            bins.append(row | {"skipped": f"fewer than {MIN_BIN} words"})
            continue
        queries = random_queries(
            raw, index.tokenizer, index.embedder.d_vocab, n, args.draws, 4242,
            index.tokens.trained, (b,) * n,
        )  # fmt: skip
        under_uniform = under_matched = 0
        for q in queries:
            sc, _ = rank(index, q, DEFAULT_METHOD, kinds, DEFAULT_THRESHOLD, top=1)
            best = float(sc.score[0]) if len(sc.rows) else -math.inf
            under_uniform += uniform.p(best) <= ALPHA
            hit = search(index, q.text, top=1, k=1).hits
            under_matched += bool(hit and hit[0].significant)
        row |= {
            "draws": len(queries),
            "significant_uniform_null": round(under_uniform / len(queries), 3),
            "significant_matched_null": round(under_matched / len(queries), 3),
        }
        bins.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = {
        "model": args.model,
        "method": DEFAULT_METHOD,
        "kinds": list(kinds),
        "concepts": n,
        "alpha": ALPHA,
        "bins": bins,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
