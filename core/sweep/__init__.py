"""Sweeps: build the cache entries of many models (a checkpoint series, a model suite),
serially here or as Ray tasks on a cluster that share one cache folder.
"""

from core.sweep.engine import SweepOptions, SweepReport, run_sweep
from core.sweep.task import WHAT, TaskResult, TaskSpec, run_task

__all__ = ["WHAT", "SweepOptions", "SweepReport", "TaskResult", "TaskSpec", "run_sweep", "run_task"]
