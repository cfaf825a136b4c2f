"""Checked reads of a cache entry's files, and tables read on first use.

A reader owns what it reads: each file is read into memory through one descriptor,
checked (its SHA-256, or the stamp of an earlier check against that descriptor), and
parsed from those bytes (no memory map), so a file truncated or rewritten later can
neither fault the process nor change the values it holds.

A process that answers one question (``mapped=True``: the CLI's lazy reads) maps the
files instead (private, copy-on-write): a settled file whose stamp still matches is then
not read at all, only the pages a query touches are (a search reads a few ``W_U``
columns, not the 226 MB checkpoint part of SmolLM2-135M). The cache never rewrites a
file in place (every write is a new file renamed over the old one, and a removed entry's
files stay readable while mapped), so the mapped bytes are the checked ones for the life
of the process; a long-lived reader (the dashboard) keeps the owned buffers.

:class:`LazyTable` reads a kind's file when a caller first asks for that kind: a cached
answer about OV heads reads the OV file, not the whole entry. The manifest is checked
when the entry is opened; each file is checked when it is read, against that manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cache.manifest import check_manifest, inside
from core.cache.tables import KindResult, kind_from_tensors
from core.cache.tensors import tensors_from_buffer
from core.errors import CacheError
from core.model.weights import ModelMeta

FORMAT_VERSION = 2
#: Stat stamps of the files whose SHA-256 checked out (see :data:`TRUST_AFTER_S`).
VERIFIED = "verified.json"
#: What a file's bytes are held in: an owned buffer, or a private memory map.
Buffer = bytearray | mmap.mmap


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checked(
    out: Path,
    name: str,
    meta: ModelMeta,
    processing: str,
    settings_key: dict[str, Any],
    group: str | None,
    only: frozenset[str] | None = None,
    mapped: bool = False,
) -> tuple[dict[str, Any], dict[str, Buffer]]:
    """The manifest ``out / name`` and its files' bytes (only those named in ``only``,
    when given), after checking the manifest's shape, format, weights and settings and
    each file's size and SHA-256 (``mapped``: memory maps, see the module docstring).

    ``group`` is the table the manifest indexes (``kinds``, ``controls``; ``None`` for
    the checkpoint part). Malformed content of any shape is a :class:`CacheError`.
    """
    mpath = out / name
    if not mpath.is_file():
        raise CacheError(f"No cache entry at {out}.")
    try:
        info = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(f"The cache metadata {mpath} is unreadable ({exc}).") from exc
    info = check_manifest(info, mpath, group)
    if info.get("format_version") != FORMAT_VERSION:
        raise CacheError(f"The cache entry {out} has another format version.")
    if info["model"]["weights_hash"] != meta.weights_hash:
        raise CacheError(f"The cache entry {out} was built from other weights.")
    if info.get("processing") != processing or info.get("settings") != settings_key:
        raise CacheError(f"The cache entry {out} was built with other settings.")
    files: dict[str, dict[str, Any]] = info["files"]
    names = [n for n in files if only is None or n in only]
    for n in files:  # a missing or truncated file is seen now, whether read now or later
        try:
            size = inside(out, out / n).stat().st_size
        except OSError:
            size = -1
        if size != files[n]["size"]:
            raise CacheError(f"The cache file {out / n} is missing, truncated or corrupted.")
    return info, read_files(out, files, names, mapped)


def read_files(
    out: Path, files: dict[str, dict[str, Any]], names: list[str], mapped: bool = False
) -> dict[str, Buffer]:
    """The bytes of ``names`` in entry ``out``, each checked against its manifest record
    in ``files`` (size and SHA-256); stamps the files whose hash checked out. With
    ``mapped`` each is a private memory map (see the module docstring).
    """
    stamps = _read_stamps(out)
    if mapped:
        # Only the tensor files: JSON is parsed whole anyway.
        read = {
            n: (_map_file if n.endswith(".safetensors") else _read_file)(out, n, files[n], stamps)
            for n in names
        }
        _stamp_new(out, stamps, files, read)
        return {n: data for n, (data, _, _) in read.items()}
    # Read (and hash) the biggest files first, in parallel: hashlib and file reads
    # release the GIL, and the hashing is most of a cached answer's time.
    names = sorted(names, key=lambda n: -int(files[n]["size"]))
    with ThreadPoolExecutor(max_workers=max(1, min(len(names), os.cpu_count() or 1))) as pool:
        read = dict(zip(names, pool.map(lambda n: _read_file(out, n, files[n], stamps), names)))
    _stamp_new(out, stamps, files, read)
    return {n: data for n, (data, _, _) in read.items()}


def _stamp_new(
    out: Path,
    stamps: dict[str, Any],
    files: dict[str, dict[str, Any]],
    read: dict[str, tuple[Buffer, os.stat_result, bool]],
) -> None:
    """Stamp the settled files of ``read`` whose hash was checked now."""
    settled = time.time() - TRUST_AFTER_S
    new = {
        n: _stamp(st, files[n]["sha256"])
        for n, (_, st, hashed) in read.items()
        if hashed and st.st_mtime < settled and st.st_ctime < settled
    }
    if new:
        _write_stamps(out, {**stamps, **new})


def _map_file(
    out: Path, fname: str, want: dict[str, Any], stamps: dict[str, Any]
) -> tuple[Buffer, os.stat_result, bool]:
    """``out / fname`` as a private memory map, its stat, and whether it was hashed (when
    its stamp does not vouch for it); :class:`CacheError` unless it is the manifest's.
    """
    p = inside(out, out / fname)
    damaged = CacheError(f"The cache file {p} is missing, truncated or corrupted.")
    try:
        with open(p, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            if st.st_size != want["size"]:
                raise damaged
            if st.st_size == 0:
                return bytearray(), st, False
            # ACCESS_COPY: writable for torch.frombuffer, and writes stay in this process.
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError) as exc:
        raise damaged from exc
    return data, st, _hashed(fname, data, st, want, stamps, damaged)


def _read_file(
    out: Path, fname: str, want: dict[str, Any], stamps: dict[str, Any]
) -> tuple[bytearray, os.stat_result, bool]:
    """``out / fname``'s bytes, its stat, and whether they were hashed; :class:`CacheError`
    unless they are the manifest's. The bytes are read through one descriptor whose stat
    is taken before and after, so a stamp can vouch for exactly these bytes; they are a
    private buffer that the parsed tensors then view (:mod:`core.cache.tensors`).
    """
    p = inside(out, out / fname)
    damaged = CacheError(f"The cache file {p} is missing, truncated or corrupted.")
    try:
        with open(p, "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            if before.st_size != want["size"]:
                raise damaged
            data = bytearray(before.st_size)
            view, got = memoryview(data), 0
            while got < len(data):
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            more = f.read(1)
            after = os.fstat(f.fileno())
    except OSError as exc:
        raise damaged from exc
    if got != want["size"] or more or _stamp(before, "") != _stamp(after, ""):
        raise damaged
    return data, before, _hashed(fname, data, before, want, stamps, damaged)


def _hashed(
    fname: str,
    data: Buffer,
    st: os.stat_result,
    want: dict[str, Any],
    stamps: dict[str, Any],
    damaged: CacheError,
) -> bool:
    """Whether ``data`` had to be hashed now: not when ``fname``'s stamp vouches for the
    file it came from (``st``); raises ``damaged`` when the hash is not the manifest's.
    """
    if stamps.get(fname) == _stamp(st, want["sha256"]):
        return False
    if _digest(data) != want["sha256"]:
        raise damaged
    return True


def _digest(data: bytes | bytearray | mmap.mmap) -> str:
    return hashlib.sha256(data).hexdigest()


#: Files verified (SHA-256) when last written at least this long ago are trusted on
#: later reads while their size, mtime, ctime and inode stay the same: every rewrite
#: (even of one byte, even within the clock tick of the original write) lands after
#: the verification and moves them. What this cannot see is a change that keeps every
#: one of them (bit rot on the disk); a cached answer no longer rehashes every file.
TRUST_AFTER_S = 2.0


def _stamp(st: os.stat_result, sha256: str) -> list[Any]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sha256]


def _read_stamps(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / VERIFIED).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamps(out: Path, stamps: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a read-only cache: verify again next time
        atomic_write_bytes(out / VERIFIED, json.dumps(stamps).encode())


def read_group(
    out: Path, info: dict[str, Any], group: str, blobs: dict[str, Buffer]
) -> dict[str, KindResult]:
    """Every kind of ``info[group]`` parsed from its file's bytes in ``blobs``."""
    table: dict[str, KindResult] = {}
    try:
        for kind, k in info[group].items():
            t = tensors_from_buffer(blobs[k["file"]])  # views of a private buffer
            table[kind] = kind_from_tensors(
                kind, k["components"], int(k["n_projected"]), t, group == "controls"
            )
    except Exception as exc:  # any content that does not fit (names, shapes, dtypes)
        raise CacheError(f"The cache entry {out} does not parse ({exc}).") from exc
    return table


if TYPE_CHECKING:
    _Table = MutableMapping[str, KindResult]
else:
    # Unsubscripted at run time: a runtime type checker (the tests' beartype) samples an
    # item of a subscripted mapping, which would read a file this class reads on demand.
    _Table = MutableMapping


class LazyTable(_Table):
    """One group of an entry (its kinds, or its controls), each kind read and checked when
    first asked for (``mapped``: memory-mapped, see the module docstring). Safe to share
    between threads; values set later (a background fill) replace what was read.
    """

    def __init__(self, out: Path, info: dict[str, Any], group: str, mapped: bool = False) -> None:
        self._out, self._info, self._group, self._mapped = out, info, group, mapped
        self._index: dict[str, Any] = dict(info[group])
        self._loaded: dict[str, KindResult] = {}
        self._lock = threading.Lock()

    def __getitem__(self, kind: str) -> KindResult:
        res = self._loaded.get(kind)
        if res is not None:
            return res
        if kind not in self._index:
            raise KeyError(kind)
        with self._lock:
            if kind not in self._loaded:
                fname = self._index[kind]["file"]
                try:
                    blobs = read_files(self._out, self._info["files"], [fname], self._mapped)
                except CacheError as exc:
                    # The manifest no longer vouches for the entry: drop it, so that the
                    # next open rebuilds it instead of failing here again.
                    with contextlib.suppress(OSError):
                        (self._out / "meta.json").unlink(missing_ok=True)
                    raise CacheError(
                        f"{exc} The entry is dropped; run the command again (or reload the "
                        "page) to rebuild it."
                    ) from exc
                table = read_group(
                    self._out, {self._group: {kind: self._index[kind]}}, self._group, blobs
                )
                self._loaded[kind] = table[kind]
            return self._loaded[kind]

    def record(self, kind: str) -> dict[str, Any] | None:
        """The manifest's record of ``kind`` (``file``, ``components``, ``n_projected``)
        without reading its file, or ``None`` once the kind is in memory (read, or set
        later: then its value, not the manifest, is what holds).
        """
        with self._lock:
            if kind in self._loaded:
                return None
            rec = self._index.get(kind)
            return dict(rec) if isinstance(rec, dict) else None

    def __setitem__(self, kind: str, value: KindResult) -> None:
        with self._lock:
            self._loaded[kind] = value
            self._index.setdefault(kind, None)

    def __delitem__(self, kind: str) -> None:
        with self._lock:
            self._loaded.pop(kind, None)
            del self._index[kind]

    def __contains__(self, kind: object) -> bool:
        # Mapping's own test would look the kind up, reading its file.
        return kind in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"LazyTable({self._group}: {list(self._index)}, read {list(self._loaded)})"
