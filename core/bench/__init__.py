"""The benchmark: random models of real GPT-2 shapes, the live code paths timed
against a plain floor and TransformerLens's ``SVDInterpreter``.
"""

from core.bench.options import BenchOptions
from core.bench.run import run_isolated, run_shape

__all__ = ["BenchOptions", "run_isolated", "run_shape"]
