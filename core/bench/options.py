"""What one benchmark run measures and how: kinds, sizes, repeats, threads."""

from __future__ import annotations

from dataclasses import dataclass

#: Kinds, directions and tokens the benchmark precomputes (the issue's setting).
KINDS = ("ov", "mlp_in", "mlp_out")
N_PROJECT = 64
K = 20
#: Bytes of one block of the floor's product (rows are chunked to stay under it).
FLOOR_BLOCK_BYTES = 1 << 30


@dataclass(frozen=True)
class BenchOptions:
    """How to run: device, repeats, threads, reference scope, searches (and whether they
    are timed again after the search nulls' warm-up), grid heads, and where the MLP Gram
    eigendecompositions run (``Settings.gram_eigh``).
    """

    device: str = "cpu"
    repeat: int = 1
    threads: int | None = None
    reference_layers: int | None = None
    queries: int = 100
    null_warm_up: bool = True
    grid_heads: int = 20
    seed: int = 0
    gram_eigh: str = "device"
