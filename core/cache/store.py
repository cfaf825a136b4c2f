"""The on-disk cache: safetensors for tensors, JSON for metadata, never pickle.

Layout: ``<cache_dir>/<model folder>/<weights-hash>-<processing>/`` holding one
``<kind>.safetensors`` per matrix kind and a ``meta.json`` written last, which records
the format version, the settings that shape the content, and the size and SHA-256 of
every tensor file (rehashed on a read unless ``verified.json`` holds the file's
unchanged stat from an earlier check: :data:`core.cache.reading.TRUST_AFTER_S`). Opening
an entry checks its manifest; each kind's file is read and checked when first asked for
(:class:`core.cache.reading.LazyTable`). The random controls are a second, optional part
of the same entry
(``<kind>.control.safetensors`` and ``controls.json``, same checks): they are built on
first use, so a precompute does not pay for them. Two more kinds of part are written
by their own modules on the same pattern: the checkpoint part, which lets an entry
answer without the model (:mod:`core.cache.checkpoint`), and derived parts such as the
search index's statistics (:mod:`core.cache.parts`). Each file is written to a temporary
name and renamed, so a reader sees either a whole part or none; a part whose manifest
or files do not check out is reported as invalid and rebuilt by the caller.

The model folder is a hash of the model's name (:func:`core.cache.manifest.model_folder`),
and every entry path is checked to stay inside the cache folder. A reader owns what it
reads: each file is read into memory through one descriptor, checked (its SHA-256, or the
stamp of an earlier check, against that descriptor), and parsed from those bytes, so a
file truncated or rewritten later cannot change the values it holds. The exception is a
lazy read for a process answering one question, which maps the files instead
(:mod:`core.cache.reading`; the cache never rewrites a file in place). Leftover ``.tmp``
files of a killed writer are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from core.cache.manifest import check_manifest, inside, model_folder
from core.cache.reading import (
    FORMAT_VERSION,
    LazyTable,
    atomic_write_bytes,
    read_checked,
    read_group,
)
from core.cache.tables import KindResult, kind_tensors
from core.cache.tensors import write_tensors
from core.errors import CacheError
from core.model.weights import ModelMeta

CONTROLS_MANIFEST = "controls.json"
#: Names of the later parts' files that :func:`save` drops with the entry they were made
#: from (their writers: :mod:`core.cache.checkpoint`, :mod:`core.cache.parts`).
CHECKPOINT_MANIFEST = "checkpoint.json"
PART_PREFIX = "part-"


@dataclass(frozen=True)
class ModelSVD:
    """Everything cached for one model, weights hash and processing.

    Attributes:
        meta: the model's shapes and weights hash.
        processing: ``raw`` or ``post``.
        k: tokens kept per end in ``tops``.
        kinds: real decompositions by kind.
        controls: random Gaussian controls by kind; empty until built (they are
            optional, see :func:`core.random_control.controls`).
    """

    meta: ModelMeta
    processing: str
    k: int
    # A union rather than MutableMapping: a runtime type check of a mapping samples an
    # item, which would read a lazy table's file.
    kinds: dict[str, KindResult] | LazyTable
    controls: dict[str, KindResult] = field(default_factory=dict)


def entry_dir(cache_dir: Path, meta: ModelMeta, processing: str) -> Path:
    """Where the entry for this model, hash and processing lives.

    Raises:
        CacheError: the path would leave ``cache_dir`` (a weights hash read from a
            damaged manifest, say).
    """
    out = Path(cache_dir) / model_folder(meta.name) / f"{meta.weights_hash[:16]}-{processing}"
    return inside(cache_dir, out)


#: A writer's temporary file older than this is a leftover of a killed process (a live
#: writer renames its file within seconds).
STALE_TMP_S = 15 * 60


def _clean_tmp(out: Path) -> None:
    """Remove ``out``'s leftover ``.*.tmp`` files (see :data:`STALE_TMP_S`)."""
    old = time.time() - STALE_TMP_S
    for p in out.glob(".*.tmp"):
        try:
            if p.stat().st_mtime < old:
                p.unlink()
        except OSError:  # gone already, or a read-only cache
            pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(out: Path, fname: str) -> dict[str, Any]:
    """The manifest's record of file ``fname`` in ``out``: its size and SHA-256."""
    return {"size": (out / fname).stat().st_size, "sha256": _sha256(out / fname)}


def write_safetensors(out: Path, fname: str, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Write ``tensors`` (CPU, contiguous) to ``out / fname`` through a temporary file and
    a rename; returns the file's :func:`file_record`, hashed on the way out rather than
    read back.
    """
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{fname}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            size, sha = write_tensors(f, tensors)
        os.replace(tmp, out / fname)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"size": size, "sha256": sha}


def _index_row(fname: str, res: KindResult) -> dict[str, Any]:
    return {
        "file": fname,
        "components": [list(c) for c in res.decomposition.components],
        "n_projected": res.n_projected,
    }


def _write_tables(
    out: Path, group: str, table: Mapping[str, KindResult]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Write each kind's tensors; returns the files' sizes and hashes and the group's index."""
    files: dict[str, dict[str, Any]] = {}
    index: dict[str, Any] = {}
    for kind, res in table.items():
        fname = f"{kind}.control.safetensors" if group == "controls" else f"{kind}.safetensors"
        files[fname] = write_safetensors(out, fname, kind_tensors(res))
        index[kind] = _index_row(fname, res)
    return files, index


def manifest_head(meta: ModelMeta, processing: str, settings_key: dict[str, Any]) -> dict[str, Any]:
    """The fields every part's manifest starts with (checked by
    :func:`core.cache.reading.read_checked`).
    """
    return {
        "format_version": FORMAT_VERSION,
        "model": meta.to_json(),
        "processing": processing,
        "settings": settings_key,
    }


def write_manifest(
    path: Path, meta: ModelMeta, processing: str, settings_key: dict[str, Any], **fields: Any
) -> None:
    """Write a part's manifest to ``path`` (atomically): :func:`manifest_head` and
    ``fields``. A part is valid once its manifest is there, so this comes last.
    """
    info = {**manifest_head(meta, processing, settings_key), **fields}
    atomic_write_bytes(path, json.dumps(info, indent=1).encode())


class EntryWriter:
    """Writes an entry kind by kind, on a background thread, as a build hands the kinds
    over (:func:`core.cache.build.build_and_save`): the next kind is decomposed and
    projected while the last one is serialised, hashed and written.

    Opening the writer invalidates the old entry (its manifest, controls, checkpoint part
    and derived parts); :meth:`finish` writes the manifest once every file is down, so a
    reader sees the whole new entry or none. Leaving the ``with`` block on an error
    waits for the writes under way and leaves the entry invalid (rebuilt on next open).
    """

    def __init__(
        self,
        cache_dir: Path,
        meta: ModelMeta,
        processing: str,
        settings_key: dict[str, Any],
        background: bool = True,
    ) -> None:
        self.cache_dir, self.settings_key = Path(cache_dir), settings_key
        self.out = entry_dir(cache_dir, meta, processing)
        self.out.mkdir(parents=True, exist_ok=True)
        _clean_tmp(self.out)
        # The entry is invalid until rewritten, and the parts made from it with it.
        (self.out / "meta.json").unlink(missing_ok=True)
        (self.out / CONTROLS_MANIFEST).unlink(missing_ok=True)
        (self.out / CHECKPOINT_MANIFEST).unlink(missing_ok=True)
        for derived in self.out.glob(f"{PART_PREFIX}*.json"):
            derived.unlink(missing_ok=True)
        # One thread: the writes are I/O and hashing (both release the GIL), and one at a
        # time keeps at most one kind's tensors in flight beside the build. Without
        # ``background`` (every kind built already) the writes run in the caller's thread:
        # a background fill saves its entry while the interpreter exits, when an executor
        # takes no more work.
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")
            if background
            else None
        )
        self._pending: dict[str, Future[dict[str, Any]]] = {}

    def add(self, kind: str, res: KindResult) -> None:
        """Queue ``res`` (on the CPU) to be written as ``kind``'s file (or write it now,
        without a background thread).
        """
        fname = f"{kind}.safetensors"
        if self._pool is not None:
            self._pending[kind] = self._pool.submit(
                lambda: write_safetensors(self.out, fname, kind_tensors(res))
            )
            return
        done: Future[dict[str, Any]] = Future()
        done.set_result(write_safetensors(self.out, fname, kind_tensors(res)))
        self._pending[kind] = done

    def finish(self, svd: ModelSVD) -> Path:
        """Wait for the writes, then write the manifest of ``svd`` (whose kinds are the
        ones added; its controls too, when it holds any); returns the entry directory.
        """
        files = {f"{kind}.safetensors": job.result() for kind, job in self._pending.items()}
        missing = set(svd.kinds.keys()) ^ set(self._pending)
        if missing:
            raise ValueError(f"kinds written and kinds of the entry differ: {sorted(missing)}")
        if self._pool is not None:
            self._pool.shutdown()
        write_manifest(
            self.out / "meta.json",
            svd.meta,
            svd.processing,
            self.settings_key,
            k=svd.k,
            files=files,
            kinds={kind: _index_row(f"{kind}.safetensors", svd.kinds[kind]) for kind in svd.kinds},
        )
        if svd.controls:
            save_controls(svd, self.cache_dir, self.settings_key)
        return self.out

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for job in self._pending.values():
            job.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def save(svd: ModelSVD, cache_dir: Path, settings_key: dict[str, Any]) -> Path:
    """Write ``svd`` atomically (its controls too, when it holds any); returns the entry
    directory.

    ``settings_key`` holds the settings that shape the content (k, n_project, seed...):
    an entry written under other settings is stale for a reader with these.
    """
    with EntryWriter(cache_dir, svd.meta, svd.processing, settings_key, background=False) as writer:
        for kind, res in svd.kinds.items():
            writer.add(kind, res)
        return writer.finish(svd)


def save_controls(svd: ModelSVD, cache_dir: Path, settings_key: dict[str, Any]) -> Path:
    """Write ``svd.controls`` as the controls part of its (existing) entry; returns the
    entry directory. The kinds are not rewritten.
    """
    out = entry_dir(cache_dir, svd.meta, svd.processing)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONTROLS_MANIFEST).unlink(missing_ok=True)
    files, index = _write_tables(out, "controls", svd.controls)
    write_manifest(
        out / CONTROLS_MANIFEST,
        svd.meta,
        svd.processing,
        settings_key,
        files=files,
        controls=index,
    )
    return out


def load(
    cache_dir: Path,
    meta: ModelMeta,
    processing: str,
    settings_key: dict[str, Any],
    with_controls: bool = False,
    lazy: bool = False,
) -> ModelSVD:
    """Read and verify the entry for ``meta`` and ``processing``; with ``with_controls``
    its controls too when a valid controls part exists (else ``controls`` is empty:
    :func:`core.random_control.controls` reads or rebuilds them on first use, so an answer that
    needs no control does not read them).

    With ``lazy`` only the manifest is checked now (and every file's size); each kind's
    file is mapped and checked when first asked for (:class:`LazyTable`). That suits a
    process answering one question (a CLI call reads the kinds it needs); a long-lived
    reader keeps the default, which owns every value from the start, whatever happens to
    the files later.

    Raises:
        CacheError: missing, stale (other format, weights or settings), truncated or
            corrupted; the message says which.
    """
    out = entry_dir(cache_dir, meta, processing)
    _clean_tmp(out)
    kinds: dict[str, KindResult] | LazyTable
    if lazy:
        info, _ = read_checked(
            out, "meta.json", meta, processing, settings_key, "kinds", frozenset()
        )
        kinds = LazyTable(out, info, "kinds", mapped=True)
    else:
        info, blobs = read_checked(out, "meta.json", meta, processing, settings_key, "kinds")
        kinds = read_group(out, info, "kinds", blobs)
    try:
        stored = ModelMeta(**info["model"])
    except (TypeError, ValueError) as exc:
        raise CacheError(f"The cache entry {out} does not parse ({exc}).") from exc
    controls: dict[str, KindResult] = {}
    if with_controls:
        with contextlib.suppress(CacheError):
            controls = load_controls(cache_dir, meta, processing, settings_key)
    return ModelSVD(
        meta=stored,
        processing=processing,
        k=int(info["k"]),
        kinds=kinds,
        controls=controls,
    )


def controls_on_disk(cache_dir: Path, meta: ModelMeta, processing: str) -> bool:
    """Whether the entry has a controls part (unchecked: :func:`load_controls` verifies)."""
    return (entry_dir(cache_dir, meta, processing) / CONTROLS_MANIFEST).is_file()


def load_controls(
    cache_dir: Path, meta: ModelMeta, processing: str, settings_key: dict[str, Any]
) -> dict[str, KindResult]:
    """Read and verify the controls part of an entry.

    Raises:
        CacheError: missing, stale, truncated or corrupted; the message says which.
    """
    out = entry_dir(cache_dir, meta, processing)
    info, blobs = read_checked(out, CONTROLS_MANIFEST, meta, processing, settings_key, "controls")
    return read_group(out, info, "controls", blobs)


def list_entries(cache_dir: Path) -> list[dict[str, Any]]:
    """Summaries of the entries under ``cache_dir`` (for the overview page)."""
    rows = []
    for mpath in sorted(Path(cache_dir).glob("*/*/meta.json")):
        try:
            info = check_manifest(json.loads(mpath.read_text()), mpath, "kinds")
            size = sum(p.stat().st_size for p in mpath.parent.iterdir() if p.is_file())
        except (CacheError, OSError, ValueError):  # a damaged entry is rebuilt on open
            continue
        rows.append(
            {
                "model": str(info["model"].get("name")),
                "processing": str(info.get("processing")),
                "kinds": ", ".join(info["kinds"]),
                "controls": (mpath.parent / CONTROLS_MANIFEST).is_file(),
                "size_mb": round(size / 2**20, 2),
                "path": str(mpath.parent),
            }
        )
    return rows


def remove_entry(cache_dir: Path, meta: ModelMeta, processing: str) -> None:
    """Delete an entry (used before a rebuild)."""
    shutil.rmtree(entry_dir(cache_dir, meta, processing), ignore_errors=True)
