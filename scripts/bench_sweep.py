#!/usr/bin/env python
"""Sweep benchmark: N random checkpoints of one shape, built by the serial engine and by
Ray on a local cluster of ``--cpus`` CPUs, into two fresh cache folders; prints JSON with
both wall times, Ray's start-up, the per-model cost and whether the entries are the same
bytes.

    .venv/bin/python scripts/bench_sweep.py --shape tiny --n 10 --cpus 2
    .venv/bin/python scripts/bench_sweep.py --shape demo --n 10 --cpus 2
    .venv/bin/python scripts/bench_sweep.py --shape pythia-160m --n 1 --no-ray
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: layers, d_model, heads, tokenizer (a folder under models/)
SHAPES = {
    "tiny": (2, 64, 4, "demo-gpt2"),
    "demo": (4, 256, 4, "demo-gpt2"),
    # Pythia-160m's layers and widths (GPT-2 blocks) with SmolLM2's 49,152-token
    # tokenizer, close to Pythia's 50,304: the per-model cost of the suite's 160m size.
    "pythia-160m": (12, 768, 12, "smollm2-135m"),
}


def make_series(root: Path, shape: str, n: int) -> list[str]:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    layers, d, heads, tok_dir = SHAPES[shape]
    tok = AutoTokenizer.from_pretrained(REPO / "models" / tok_dir)
    out = []
    for i in range(n):
        torch.manual_seed(i)
        cfg = GPT2Config(
            n_layer=layers, n_embd=d, n_head=heads, vocab_size=len(tok), n_positions=128
        )
        d_i = root / f"step-{2**i:05d}"
        GPT2LMHeadModel(cfg).save_pretrained(d_i)
        tok.save_pretrained(d_i)
        out.append(str(d_i))
    return out


def digests(cache: Path) -> dict[str, str]:
    return {
        str(p.relative_to(cache)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(cache.rglob("*"))
        if p.is_file() and ".sweep" not in p.parts and p.name != "verified.json"
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    from core.sweep import SweepOptions, run_sweep

    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        t0 = time.perf_counter()
        models = tuple(make_series(root / "models", args.shape, args.n))
        made = time.perf_counter() - t0
        serial = run_sweep(SweepOptions(models, root / "serial", device="cpu"))
        out = {
            "shape": args.shape,
            "checkpoints": args.n,
            "make_checkpoints_s": round(made, 2),
            "serial_s": round(serial.seconds, 2),
            "serial_per_model_s": [round(r.seconds, 3) for r in serial.results],
            "load_avg_start": os.getloadavg()[0],
        }
        if not args.no_ray:
            import ray

            t1 = time.perf_counter()
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
            out["ray_start_s"] = round(time.perf_counter() - t1, 2)
            try:
                opts = SweepOptions(models, root / "ray", device="cpu", engine="ray")
                rep = run_sweep(opts)
                out["ray_s"] = round(rep.seconds, 2)
                out["ray_per_task_s"] = [round(r.seconds, 3) for r in rep.results]
                again = run_sweep(opts)
                out["ray_rerun_s"] = round(again.seconds, 2)
                out["ray_rerun_states"] = sorted({r.state for r in again.results})
            finally:
                ray.shutdown()
            a, b = digests(root / "serial"), digests(root / "ray")
            out["files"] = len(a)
            out["identical"] = a == b
            out["differing"] = sorted(k for k in a if a[k] != b.get(k))
        out["load_avg_end"] = os.getloadavg()[0]
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
