#!/usr/bin/env python
"""Per-layer split against a whole-model build: wall time and peak memory of each piece
(each in its own process, as a Ray worker runs it) and of the merge, against one process
building the whole entry; and whether the two entries are the same bytes. Prints JSON.

    .venv/bin/python scripts/bench_split.py --model models/smollm2-135m --layers-per-task 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Runs one step in a fresh interpreter and prints its wall time and peak RSS.
_STEP = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from core.settings import Settings
from core.sweep.task import one_thread
settings = Settings(model={model!r}, device="cpu", cache_dir=Path({cache!r}))
t0 = time.perf_counter()
with one_thread():
    step = {step!r}
    if step == "whole":
        from core.analysis import open_analysis
        open_analysis(settings)
    elif step == "merge":
        from core.sweep.layers import merge
        merge(settings, Path({model!r}), {ranges!r})
    else:
        from core.sweep.layers import build_shard
        build_shard(settings, Path({model!r}), None if step == "embed" else tuple(step))
print(json.dumps({{"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def step(model: str, cache: Path, what: object, ranges: list[tuple[int, int]]) -> dict:
    code = _STEP.format(repo=str(REPO), model=model, cache=str(cache), step=what, ranges=ranges)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def digests(cache: Path) -> dict[str, str]:
    import hashlib

    from core.cache.reading import VERIFIED

    return {
        str(f.relative_to(cache)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(cache.rglob("*"))
        if f.is_file()
        and f.relative_to(cache).parts[0] not in (".sweep", ".shards")
        and f.name != VERIFIED
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=str(REPO / "models" / "smollm2-135m"))
    p.add_argument("--layers-per-task", type=int, default=10)
    args = p.parse_args()
    from core.model.streamed import CheckpointReader
    from core.sweep.layers import plan

    model = str(Path(args.model).resolve())
    ranges = plan(CheckpointReader(model).n_layers, args.layers_per_task)
    with tempfile.TemporaryDirectory() as tmp:
        whole_cache, split_cache = Path(tmp) / "whole", Path(tmp) / "split"
        whole = step(model, whole_cache, "whole", ranges)
        pieces = {
            f"layers {a}-{b - 1}": step(model, split_cache, [a, b], ranges) for a, b in ranges
        }
        pieces["embed"] = step(model, split_cache, "embed", ranges)
        merged = step(model, split_cache, "merge", ranges)
        same = digests(whole_cache) == digests(split_cache)
        n_files = len(digests(whole_cache))
    print(
        json.dumps(
            {
                "model": model,
                "layers_per_task": args.layers_per_task,
                "whole": whole,
                "pieces": pieces,
                "merge": merged,
                "max_piece_rss_mb": max(v["peak_rss_mb"] for v in pieces.values()),
                "entry_files": n_files,
                "byte_identical": same,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
