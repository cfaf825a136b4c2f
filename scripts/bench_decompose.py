"""Build cost of each decomposition beyond the SVD on one model (default: the demo).

Usage: ``python scripts/bench_decompose.py [--model default]``. Fits each method's
default build (real matrix, no cache) once and prints wall and CPU seconds as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.analysis import open_analysis
from core.decompose import DecomposeOptions, fit_components
from core.settings import Settings

BUILDS = (
    ("dictionary", "embed", 0),
    ("dictionary", "mlp_out", 0),
    ("dictionary", "ov", 0),
    ("nmf", "mlp_out", 0),
    ("ica", "embed", 0),
    ("ica", "mlp_in", 0),
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="default")
    args = p.parse_args()
    a = open_analysis(Settings(model=args.model, device="cpu"))
    _ = a.weights  # load the model before timing
    for method, matrix, layer in BUILDS:
        opts = DecomposeOptions(method=method)
        w0, c0 = time.perf_counter(), time.process_time()
        c = fit_components(a, opts, matrix, layer)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(
            json.dumps(
                {
                    "method": method,
                    "matrix": matrix,
                    "layer": layer,
                    "components": c.n,
                    "rows": c.n_rows,
                    "fit_rows": c.n_fit,
                    "fvu": round(c.fvu, 4),
                    "wall_s": round(wall, 1),
                    "cpu_s": round(cpu, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
