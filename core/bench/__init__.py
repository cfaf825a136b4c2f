"""The benchmark: random models of real GPT-2 shapes, the live code paths timed
against a plain floor and TransformerLens's ``SVDInterpreter``."""

from core.bench.run import BenchOptions, run_isolated, run_shape

__all__ = ["BenchOptions", "run_isolated", "run_shape"]
