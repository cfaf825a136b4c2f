"""How many hits real and random three-word queries get, at the significance cut and at
the post's 0.15 |cosine| (README, "Semantic search").

    python scripts/search_significance.py --model default
    python scripts/search_significance.py --model models/smollm2-135m

Real queries are ten themed triples; random ones are ten triples of whole-word tokens
drawn like the null's (another seed, so none of them is one of the null's draws). For
each query: the number of significant hits of the default ``token`` method (p <= 0.05
against random queries of the same shape; at most ``--top``), and the number of
directions whose ``pinv`` |cosine| reaches 0.15 (the post's rule). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.analysis import open_analysis
from core.search.engine import DEFAULT_KINDS, build_index, rank, search
from core.search.index import default_kinds
from core.search.null import random_queries
from core.settings import Settings

REAL = [
    "fire, flames, burning",
    "king, queen, prince",
    "water, river, sea",
    "one, two, three",
    "red, blue, green",
    "dog, cat, horse",
    "he, she, they",
    "war, army, soldier",
    "day, night, morning",
    "money, bank, price",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--n-random", type=int, default=10)
    p.add_argument("--top", type=int, default=200)
    p.add_argument("--cache-dir", type=Path, default=Settings().cache_dir)
    args = p.parse_args()
    t0 = time.time()
    a = open_analysis(Settings(model=args.model, cache_dir=args.cache_dir))
    index = build_index(a, DEFAULT_KINDS)
    kinds = default_kinds(index)
    rnd = random_queries(
        index.tokens.raw,
        index.tokenizer,
        index.embedder.d_vocab,
        3,
        args.n_random,
        seed=12345,
        trained=index.tokens.trained,
    )

    def measure(text: str) -> dict[str, object]:
        res = search(index, text, top=args.top, significant_only=True, k=1)
        qt = res.query
        sc, _ = rank(index, qt, "pinv", kinds, 0.15, top=None)
        return {
            "query": text,
            "significant": len(res.hits),
            "best_p": None,
            "pinv_at_0.15": len(sc.rows),
        }

    out: dict[str, object] = {"model": args.model, "directions": sum(
        b - a_ for k, (a_, b) in index.spans.items() if k in kinds)}  # fmt: skip
    for name, queries in (("real", REAL), ("random", [q.text for q in rnd])):
        rows = []
        for q in queries:
            r = measure(q)
            full = search(index, q, top=1, k=1)
            r["best_p"] = full.hits[0].p if full.hits else None
            rows.append(r)
        out[name] = {
            "queries": rows,
            "with_a_significant_hit": sum(r["significant"] > 0 for r in rows),  # type: ignore[operator]
            "median_significant": statistics.median(r["significant"] for r in rows),  # type: ignore[type-var]
            "median_pinv_at_0.15": statistics.median(r["pinv_at_0.15"] for r in rows),  # type: ignore[type-var]
        }
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
