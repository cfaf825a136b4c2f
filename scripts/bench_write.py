#!/usr/bin/env python
"""One cache table written by the live writer (``core.cache.store.write_safetensors``):
wall time of the write and the process's peak RSS. Prints JSON.

The table is random, of the shape of a GPT-2-XL MLP kind's file (48 layers of 1600
directions, both sides kept, 20 tokens per end: about 1 GB), the largest file a
precompute of that model writes. Run it in two checkouts to compare writers:

    .venv/bin/python scripts/bench_write.py                 # this checkout
    .venv/bin/python scripts/bench_write.py --repo ../old   # another one's code
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--layers", type=int, default=48)
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--k", type=int, default=20)
    args = p.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    import torch

    from core.cache.store import write_safetensors

    g = torch.Generator().manual_seed(0)
    L, D, k = args.layers, args.width, args.k
    tensors = {
        "U": torch.randn(L, D, D, generator=g),
        "V": torch.randn(L, D, D, generator=g),
        "S": torch.rand(L, D, generator=g),
        "degenerate": torch.zeros(L, D, dtype=torch.uint8),
        "top_idx": torch.randint(0, 50257, (L * D, k), dtype=torch.int32, generator=g),
        "top_val": torch.randn(L * D, k, generator=g),
        "bottom_idx": torch.randint(0, 50257, (L * D, k), dtype=torch.int32, generator=g),
        "bottom_val": torch.randn(L * D, k, generator=g),
    }
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        record = write_safetensors(Path(d), "mlp_in.safetensors", tensors)
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"repo": str(args.repo), "write_s": round(seconds, 3), "bytes": record["size"]}
    print(json.dumps(out | {"peak_rss_mib": round(peak, 1)}))


if __name__ == "__main__":
    main()
