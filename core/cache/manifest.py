"""The shape of a cache manifest (``meta.json``, ``controls.json``, ``checkpoint.json``)
and where an entry may live.

A manifest is data from disk: any file can hold any JSON. :func:`check_manifest` turns
every wrong shape (a list, a string where a number belongs, a missing part, a file name
that leaves the entry) into one :class:`~core.errors.CacheError`, which the callers treat
as a damaged entry and rebuild.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from core.errors import CacheError

#: A file inside an entry: a plain name, never a path or a dotfile.
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def model_folder(name: str) -> str:
    """The folder of a model's entries: a readable prefix and a hash of the model name.

    Never the name itself: a name may be ``..``, hold slashes, or be longer than a file
    name may be (the prefix keeps letters, digits, ``_`` and ``-`` only, 40 at most).
    """
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    base = name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "_", base).strip("_")[:40] or "model"
    return f"{prefix}-{digest}"


def inside(cache_dir: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``cache_dir``, else :class:`CacheError`."""
    root = Path(cache_dir).resolve()
    where = Path(path).resolve()
    if where != root and root not in where.parents:
        raise CacheError(f"The cache path {path} leaves the cache folder {root}; refusing it.")
    return path


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_manifest(info: object, path: Path, group: str | None) -> dict[str, Any]:
    """``info`` (parsed from ``path``) if it has a manifest's shape, else :class:`CacheError`.

    Args:
        info: the parsed JSON.
        path: the manifest's path (for the message).
        group: ``"kinds"`` or ``"controls"``: the table the manifest must index (present
            and not empty); ``None`` for the checkpoint part.
    """

    def bad(what: str) -> CacheError:
        return CacheError(f"The cache metadata {path} is malformed ({what}); it is rebuilt.")

    if not isinstance(info, dict):
        raise bad(f"a {type(info).__name__}, not an object")
    if not isinstance(info.get("model"), dict) or not isinstance(
        info["model"].get("weights_hash"), str
    ):
        raise bad("no model object with a weights_hash")
    files = info.get("files")
    if not isinstance(files, dict):
        raise bad("no files table")
    for fname, f in files.items():
        if not _FILE.match(fname):
            raise bad(f"file name {fname[:60]!r} is not a plain name")
        if not isinstance(f, dict) or not _is_int(f.get("size")) or f["size"] < 0:
            raise bad(f"file {fname} has no size")
        if not isinstance(f.get("sha256"), str) or not _SHA256.match(f["sha256"]):
            raise bad(f"file {fname} has no SHA-256")
    if group is None:
        return info
    if group == "kinds" and (not _is_int(info.get("k")) or info["k"] < 1):
        raise bad("k is not a positive whole number")
    table = info.get(group)
    if not isinstance(table, dict) or not table:
        raise bad(f"no {group}")
    for kind, k in table.items():
        if not isinstance(k, dict) or k.get("file") not in files:
            raise bad(f"{kind} names no listed file")
        if not _is_int(k.get("n_projected")) or k["n_projected"] < 1:
            raise bad(f"{kind} has no n_projected")
        comps = k.get("components")
        if not isinstance(comps, list) or not comps:
            raise bad(f"{kind} has no components")
        for c in comps:
            if not (
                isinstance(c, list)
                and len(c) == 2
                and _is_int(c[0])
                and (c[1] is None or _is_int(c[1]))
            ):
                raise bad(f"{kind} has a component that is not [layer, head]")
    return info
