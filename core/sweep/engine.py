"""Run a sweep's tasks: one after another here (``local``), or as Ray tasks on a cluster
(``ray``: an existing one at an address, or a local one started for the sweep).

Both engines run :func:`core.sweep.task.run_task`, so the entries they write are the
same byte for byte. Ray retries a task whose worker died (``max_retries``); an
exception inside the build is not retried (it would fail the same way) and is reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import SpecError
from core.sweep.task import WHAT, TaskResult, TaskSpec, attempts, read_progress, run_task

#: ``(task index, model, fraction, message)`` for every change of a task's progress.
SweepProgress = Callable[[int, str, float, str], None]


def _quiet(index: int, model: str, frac: float, msg: str) -> None:
    del index, model, frac, msg


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep.

    Attributes:
        models: model specs, one task each.
        cache_dir: the cache folder every worker writes to (shared on a cluster).
        processing, device: as in :class:`core.settings.Settings`.
        what: parts to build per model (:data:`core.sweep.task.WHAT`).
        engine: ``local`` (serial, in this process) or ``ray``.
        address: a Ray cluster's address (``None``: start a local one, or use the one
            this process is already connected to).
        num_cpus: CPUs of a local Ray cluster started here (``None``: all).
        gpus_per_task: GPUs Ray reserves per task (fractions allowed).
        max_retries: retries of a task whose worker died.
        crash_once: model specs whose first attempt kills its worker half-way (tests;
            with a split, every piece of that model's first attempt).
        layers_per_task: 0 builds each model in one task; ``N`` splits each model into
            tasks of ``N`` layers (and one for the embedding) that read only their
            layers' tensors, merged into the entry when all are done
            (:mod:`core.sweep.layers`): for models too big for one worker's memory.
    """

    models: tuple[str, ...]
    cache_dir: Path
    processing: str = "post"
    device: str = "auto"
    what: tuple[str, ...] = ("decompose",)
    engine: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    gpus_per_task: float = 0.0
    max_retries: int = 3
    crash_once: frozenset[str] = field(default_factory=frozenset)
    layers_per_task: int = 0

    def __post_init__(self) -> None:
        if not self.models:
            raise SpecError("No models to sweep; give at least one with --models.")
        bad = [w for w in self.what if w not in WHAT]
        if bad:
            raise SpecError(f"Cannot sweep {bad[0]!r}; choose from {', '.join(WHAT)}.")
        if self.engine not in ("local", "ray"):
            raise SpecError(f"Unknown engine {self.engine!r}; use local or ray.")
        if self.gpus_per_task < 0 or self.max_retries < 0:
            raise SpecError("--gpus-per-task and the retries must not be negative.")
        if self.layers_per_task < 0:
            raise SpecError("--layers-per-task must be 0 (whole models) or a positive count.")
        if self.layers_per_task and "controls" in self.what:
            raise SpecError(
                "A per-layer split cannot build the random controls (they draw the whole "
                "model in one random stream); leave out --layers-per-task or 'controls'."
            )


@dataclass(frozen=True)
class SweepReport:
    """A sweep's outcome: one result per model, in the order given."""

    engine: str
    results: tuple[TaskResult, ...]
    seconds: float
    labels: int = 0

    @property
    def failed(self) -> list[TaskResult]:
        """The tasks that failed after their retries."""
        return [r for r in self.results if r.state == "failed"]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
            "built": sum(r.state == "built" for r in self.results),
            "cached": sum(r.state == "cached" for r in self.results),
            "failed": len(self.failed),
            "retried": sum(r.attempts > 1 for r in self.results),
            "labels": self.labels,
            "tasks": [r.to_json() for r in self.results],
        }


def _specs(options: SweepOptions, status_dir: Path) -> list[TaskSpec]:
    return [
        TaskSpec(
            i,
            m,
            str(Path(options.cache_dir).resolve()),
            options.processing,
            options.device,
            tuple(options.what),
            str(status_dir),
            m in options.crash_once,
        )
        for i, m in enumerate(options.models)
    ]


def _status_dir(cache_dir: Path) -> Path:
    path = Path(cache_dir).resolve() / ".sweep" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]


def run_sweep(options: SweepOptions, progress: SweepProgress = _quiet) -> SweepReport:
    """Build every model's entry with the chosen engine; failures are reported, not raised.

    Raises:
        SpecError: Ray is asked for and cannot start or reach the cluster.
    """
    status = _status_dir(options.cache_dir)
    t0 = time.perf_counter()
    if options.layers_per_task:
        results = _run_split(options, status, progress)
        after = tuple(w for w in ("labels", "examples") if w in options.what)
        if after:
            results = _whole_round(options, status, results, progress, after)
    else:
        results = _run_specs(_specs(options, status), options, progress)
    labelled = _store_labels(options, results) if "labels" in options.what else 0
    return SweepReport(options.engine, tuple(results), time.perf_counter() - t0, labelled)


def _whole_round(
    options: SweepOptions,
    status: Path,
    merged: list[TaskResult],
    progress: SweepProgress,
    what: tuple[str, ...],
) -> list[TaskResult]:
    """After a split sweep: label each merged model, or build its examples, in a
    whole-model task (the entry is read from the cache by fingerprint; labelling loads no
    model, the examples' forward pass does).
    """
    todo = [r for r in merged if r.state != "failed"]
    specs = [
        TaskSpec(
            1000 + i,
            r.model,
            str(Path(options.cache_dir).resolve()),
            options.processing,
            options.device,
            what,
            str(status),
        )
        for i, r in enumerate(todo)
    ]
    labelled = {
        s.model: res for s, res in zip(specs, _run_specs(specs, options, progress), strict=True)
    }
    out = []
    for r in merged:
        lab = labelled.get(r.model)
        if lab is None:
            out.append(r)
        elif lab.state == "failed":
            out.append(replace(r, state="failed", error=f"{', '.join(what)}: {lab.error}"))
        else:
            state = "built" if "built" in (r.state, lab.state) else "cached"
            out.append(replace(r, state=state, seconds=r.seconds + lab.seconds))
    return out


def _store_labels(options: SweepOptions, results: Sequence[TaskResult]) -> int:
    """Copy every finished entry's verdicts into ``<cache_dir>/labels.sqlite`` (here, in
    the driver: one writer, whatever file system the workers share); returns how many.
    """
    from core.label.store import LabelStore
    from core.sweep.task import stored_labels

    records = [rec for r in results if r.entry for rec in stored_labels(Path(r.entry))]
    if not records:
        return 0
    with LabelStore.in_cache(Path(options.cache_dir)) as store:
        return store.put(records)


def _run_specs(
    specs: Sequence[TaskSpec], options: SweepOptions, progress: SweepProgress
) -> list[TaskResult]:
    if not specs:
        return []
    if options.engine == "local":
        return [_run_local(s, progress) for s in specs]
    return _run_ray(specs, options, progress)


def _settings(options: SweepOptions, model: str) -> Any:
    from core.settings import Settings

    return Settings(
        model=model,
        processing=options.processing,  # type: ignore[arg-type]
        device=options.device,  # type: ignore[arg-type]
        cache_dir=Path(options.cache_dir).resolve(),
    )


def _run_split(options: SweepOptions, status: Path, progress: SweepProgress) -> list[TaskResult]:
    """Every model in pieces of ``layers_per_task`` layers: the pieces of all models run
    as one pool of tasks, then each model whose pieces all finished is merged here.
    """
    from core.errors import CoreError
    from core.model.loading import locate_model
    from core.model.streamed import CheckpointReader
    from core.sweep.layers import cached_entry, merge, part_name, plan

    done: dict[str, TaskResult] = {}
    pieces: dict[str, list[tuple[int, int]]] = {}
    specs: list[TaskSpec] = []
    for model in options.models:
        t0 = time.perf_counter()
        try:
            source = Path(locate_model(model))
            entry = cached_entry(_settings(options, model), source)
            if entry is not None:
                done[model] = TaskResult(model, "cached", 1, time.perf_counter() - t0, str(entry))
                continue
            ranges = plan(CheckpointReader(source).n_layers, options.layers_per_task)
        except (CoreError, OSError, ValueError) as exc:
            done[model] = TaskResult(model, "failed", 0, 0.0, error=_one_line(exc))
            continue
        pieces[model] = ranges
        for layers in [*ranges, None]:
            specs.append(
                TaskSpec(
                    len(specs),
                    model,
                    str(Path(options.cache_dir).resolve()),
                    options.processing,
                    options.device,
                    tuple(options.what),
                    str(status),
                    model in options.crash_once,
                    piece=part_name(layers),
                    layers=layers,
                )
            )
    results = _run_specs(specs, options, progress)
    by_model: dict[str, list[TaskResult]] = {}
    for spec, result in zip(specs, results, strict=True):
        by_model.setdefault(spec.model, []).append(result)
    for model, ranges in pieces.items():
        parts = by_model[model]
        tries = max(r.attempts for r in parts)
        seconds = sum(r.seconds for r in parts)
        failed = [r for r in parts if r.state == "failed"]
        if failed:
            done[model] = TaskResult(
                model, "failed", tries, 0.0, error=f"{failed[0].model}: {failed[0].error}"
            )
            continue
        t0 = time.perf_counter()
        try:
            entry = merge(_settings(options, model), Path(locate_model(model)), ranges)
        except (CoreError, OSError, ValueError, RuntimeError) as exc:
            done[model] = TaskResult(model, "failed", tries, 0.0, error=_one_line(exc))
            continue
        seconds += time.perf_counter() - t0
        done[model] = TaskResult(model, "built", tries, seconds, str(entry))
    return [done[m] for m in options.models]


def _run_local(spec: TaskSpec, progress: SweepProgress) -> TaskResult:
    from core.errors import CoreError

    progress(spec.index, spec.label, 0.0, "started")
    try:
        result = run_task(spec)
    except (CoreError, OSError, RuntimeError, ValueError) as exc:
        result = TaskResult(
            spec.label,
            "failed",
            attempts(Path(spec.status_dir), spec.index),
            0.0,
            error=_one_line(exc),
        )
    progress(spec.index, spec.label, 1.0, result.state)
    return result


def _run_ray(
    specs: Sequence[TaskSpec], options: SweepOptions, progress: SweepProgress
) -> list[TaskResult]:
    try:
        import ray
    except ImportError as exc:
        raise SpecError(
            "Ray is not installed; pip install ray==2.60.0, or use --engine local."
        ) from exc
    started = False
    if not ray.is_initialized():
        try:
            ray.init(
                address=options.address,
                num_cpus=options.num_cpus if options.address is None else None,
                include_dashboard=False,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SpecError(
                f"Could not start or reach a Ray cluster ({_one_line(exc)}); check --address "
                "(ray start --head prints it) or leave it out to start a local one."
            ) from exc
        started = True
    try:
        remote = ray.remote(
            num_cpus=1,
            num_gpus=options.gpus_per_task,
            max_retries=options.max_retries,
            retry_exceptions=False,
        )(run_task)
        refs = {remote.remote(s): s for s in specs}
        results: dict[int, TaskResult] = {}
        shown: dict[int, tuple[float, str] | None] = {}
        pending = list(refs)
        for s in specs:
            progress(s.index, s.label, 0.0, "queued")
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for s in specs:
                if s.index not in results:
                    p = read_progress(Path(s.status_dir), s.index)
                    if p is not None and p != shown.get(s.index):
                        shown[s.index] = p
                        n = attempts(Path(s.status_dir), s.index)
                        progress(
                            s.index, s.label, p[0], p[1] + (f" (attempt {n})" if n > 1 else "")
                        )
            for ref in ready:
                s = refs[ref]
                try:
                    results[s.index] = ray.get(ref)
                except Exception as exc:  # a RayTaskError wraps any exception of the task
                    n = attempts(Path(s.status_dir), s.index)
                    results[s.index] = TaskResult(s.label, "failed", n, 0.0, error=_one_line(exc))
                if shown.get(s.index) != (1.0, results[s.index].state):  # not said yet
                    progress(s.index, s.label, 1.0, results[s.index].state)
        return [results[s.index] for s in specs]
    finally:
        if started:
            ray.shutdown()
