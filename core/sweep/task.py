"""One task of a sweep: build (or find) one model's cache entry.

The same function runs in the serial engine and as a Ray task, so the two write the
same bytes: it pins torch to one thread (a LAPACK call may round differently with more)
and writes through the ordinary cache code (:func:`core.analysis.open_analysis`). A
task whose entry is already in the cache reads it and reports ``cached``: a finished
entry is never recomputed, whether it came from an earlier sweep or an earlier attempt.

Progress and attempts are written as small JSON files into a folder every worker can
reach (inside the shared cache folder), which the driver polls: the same on one machine
and on a cluster with a shared file system.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What a sweep can build per model. ``decompose``: the cache entry (decompositions and
#: token projections); ``controls``: its random controls as well; ``labels``: the
#: offline labeller's verdicts on both ends of the first :data:`LABEL_N` directions of
#: every OV, MLP-in and MLP-out component (and of their controls when ``controls`` is
#: swept too);
#: ``examples``: every direction's dataset examples over the shipped reference corpus
#: (:func:`core.activations.get_examples`, default options: a forward pass of the model).
WHAT = ("decompose", "controls", "labels", "examples")
#: Directions per component the ``labels`` part labels, and tokens shown per direction
#: (as ``python -m core label`` does by default).
LABEL_N, LABEL_K = 30, 15
#: The derived cache part a task writes its verdicts to (the driver copies them into
#: the SQLite label store: workers never write to one database over a shared file system).
LABELS_PART = "labels-offline"


@dataclass(frozen=True)
class TaskSpec:
    """One model to build.

    Attributes:
        index: the task's number in the sweep (names its progress files).
        model: the model spec (embedded name, checkpoint folder, hub id[@revision]).
        cache_dir: the shared cache folder.
        processing, device: as in :class:`core.settings.Settings`.
        what: parts to build (see :data:`WHAT`).
        status_dir: where the task writes its progress and attempts.
        crash_once: exit the worker process half-way through the first attempt (a test of
            the retry path: what a killed or out-of-memory worker looks like to the engine).
        piece: empty for the whole model; else one piece of a per-layer split
            (:mod:`core.sweep.layers`): ``layers-A-B`` or ``embed``.
        layers: the piece's layer range ``[a, b)`` (``None`` for the embedding piece).
    """

    index: int
    model: str
    cache_dir: str
    processing: str
    device: str
    what: tuple[str, ...]
    status_dir: str
    crash_once: bool = False
    piece: str = ""
    layers: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        """The model, and the piece when it is one."""
        return f"{self.model} [{self.piece}]" if self.piece else self.model


@dataclass(frozen=True)
class TaskResult:
    """What one task did.

    Attributes:
        model: the model spec.
        state: ``built`` (written now), ``cached`` (found, nothing recomputed) or ``failed``.
        attempts: attempts made (more than 1: retried after a failure).
        seconds: wall time of the last attempt (0 for a failure).
        entry: the entry folder (empty on failure).
        error: one line, on failure.
    """

    model: str
    state: str
    attempts: int
    seconds: float
    entry: str = ""
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "model": self.model,
            "state": self.state,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
            "entry": self.entry,
            "error": self.error,
        }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def attempts(status_dir: Path, index: int) -> int:
    """Attempts task ``index`` has started (0 if none)."""
    path = Path(status_dir) / f"{index:04d}.attempts"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def read_progress(status_dir: Path, index: int) -> tuple[float, str] | None:
    """The last progress task ``index`` reported, or ``None``."""
    path = Path(status_dir) / f"{index:04d}.progress.json"
    try:
        data = json.loads(path.read_text())
        return float(data["frac"]), str(data["msg"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch, and the BLAS/LAPACK/OpenMP pools below it, on one thread for the block
    (restored after). The decompositions' float64 ``syevd`` runs in SciPy's OpenBLAS with
    as many threads as that library has, and a threaded solve rounds differently from a
    one-thread one: a worker Ray starts with ``OMP_NUM_THREADS=1`` then writes other
    bytes than a serial run in a process with two threads. threadpoolctl only limits
    libraries already loaded, so SciPy's LAPACK is loaded first.
    """
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS so the limit reaches it)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def run_task(spec: TaskSpec) -> TaskResult:
    """Build or find ``spec.model``'s entry; raises what the build raises (the engine
    retries and reports).
    """
    from core.analysis import open_analysis
    from core.cache.store import CONTROLS_MANIFEST, entry_dir
    from core.random_control import controls, controls_ready
    from core.settings import Settings

    status = Path(spec.status_dir)
    status.mkdir(parents=True, exist_ok=True)
    with open(status / f"{spec.index:04d}.attempts", "a") as f:
        f.write(f"{os.getpid()}\n")
    attempt = attempts(status, spec.index)
    t0 = time.perf_counter()
    settings = Settings(
        model=spec.model,
        processing=spec.processing,  # type: ignore[arg-type]
        device=spec.device,  # type: ignore[arg-type]
        cache_dir=Path(spec.cache_dir),
    )
    progress_path = status / f"{spec.index:04d}.progress.json"

    def progress(frac: float, msg: str) -> None:
        _write_json(progress_path, {"frac": frac, "msg": msg, "attempt": attempt})
        if spec.crash_once and attempt == 1 and frac >= 0.5:
            os._exit(1)  # the process dies as a killed worker does: no cleanup, no exception

    if spec.piece:
        return _run_piece(spec, settings, attempt, progress, t0)
    progress(0.0, "opening")
    with one_thread():
        a = open_analysis(settings, progress)
        built_now = not a.from_cache
        if "controls" in spec.what:
            # Read from the entry when its controls part is there, else built now.
            on_disk = (
                entry_dir(settings.cache_dir, a.meta, settings.processing) / CONTROLS_MANIFEST
            ).is_file()
            built_now |= not (controls_ready(a) or on_disk)
            controls(a)
        if "labels" in spec.what:
            built_now |= label_entry(a, "controls" in spec.what, progress)
        if "examples" in spec.what:
            built_now |= examples_entry(a, progress)
    entry = entry_dir(settings.cache_dir, a.meta, settings.processing)
    state = "built" if built_now else "cached"
    _write_json(progress_path, {"frac": 1.0, "msg": state, "attempt": attempt})
    return TaskResult(spec.model, state, attempt, time.perf_counter() - t0, str(entry))


def _run_piece(spec: TaskSpec, settings: Any, attempt: int, progress: Any, t0: float) -> TaskResult:
    from core.model.loading import locate_model
    from core.sweep.layers import build_shard

    progress(0.0, "reading the piece's tensors")
    progress(0.5, "decomposing")
    with one_thread():
        out, built = build_shard(settings, Path(locate_model(spec.model)), spec.layers)
    state = "built" if built else "cached"
    progress(1.0, state)
    return TaskResult(spec.label, state, attempt, time.perf_counter() - t0, str(out))


def label_entry(analysis: Any, with_controls: bool, progress: Any) -> bool:
    """Write the offline verdicts on both ends of ``analysis``'s entry's directions as
    its :data:`LABELS_PART` part, unless the part is there already (a part from before
    both ends were labelled is redone); returns whether it labelled now.
    """
    from core.analysis import settings_key
    from core.cache import parts as cache_parts
    from core.errors import CacheError
    from core.label.store import ENDS
    from core.label.sweep import sweep_offline

    s, key = analysis.settings, settings_key(analysis.settings)
    try:
        extra, _ = cache_parts.load_part(s.cache_dir, analysis.meta, s.processing, key, LABELS_PART)
        if extra.get("controls") == with_controls and extra.get("ends") == list(ENDS):
            return False
    except CacheError:
        pass

    def step(frac: float, msg: str) -> None:
        progress(0.5 + frac / 2, msg)

    labels = sweep_offline(analysis, n=LABEL_N, k=LABEL_K, control=with_controls, progress=step)
    meta = analysis.meta
    rows = [dataclasses.asdict(r.to_record(meta.name, meta.weights_hash, s)) for r in labels]
    extra = {
        "n": LABEL_N,
        "k": LABEL_K,
        "controls": with_controls,
        "ends": list(ENDS),
        "labels": rows,
    }
    cache_parts.save_part(s.cache_dir, analysis.meta, s.processing, key, LABELS_PART, {}, extra)
    return True


def stored_labels(entry: Path) -> list[Any]:
    """The :class:`~core.label.store.LabelRecord` verdicts in entry folder ``entry``'s
    :data:`LABELS_PART` part (empty when it has none; rows of a part written before
    verdicts named their end are top-end verdicts, and rows from before they named their
    reading take the entry's).
    """
    from core.cache import parts as cache_parts
    from core.errors import CacheError
    from core.label.store import LabelRecord
    from core.model.weights import ModelMeta

    try:
        info = json.loads((entry / "meta.json").read_text())
        meta = ModelMeta(**info["model"])
        extra, _ = cache_parts.load_part(
            entry.parent.parent, meta, info["processing"], info["settings"], LABELS_PART
        )
    except (OSError, ValueError, KeyError, TypeError, CacheError):
        return []
    entry_reading = {
        "processing": info["processing"],
        "projection": info["settings"].get("projection", "raw"),
    }
    return [LabelRecord(**{**entry_reading, **row}) for row in extra.get("labels", [])]


def examples_entry(analysis: Any, progress: Any) -> bool:
    """Build ``analysis``'s dataset examples (default options, the shipped corpus) unless
    its entry holds them; returns whether it built them now.
    """
    from core.activations import get_examples, load_corpus

    corpus = load_corpus()
    if get_examples(analysis, corpus, build=False) is not None:
        return False

    def step(frac: float, msg: str) -> None:
        progress(0.5 + frac / 2, f"examples: {msg}")

    get_examples(analysis, corpus, progress=step)
    return True
