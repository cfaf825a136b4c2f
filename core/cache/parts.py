"""Derived parts of a cache entry: what a later stage computes from the entry and keeps
beside it (the search index's statistics and row table, query-word memo, labels,
activation statistics, decompositions, knockout results, one kind's random control
decomposed for the pages: :mod:`core.random_control`).

Each part ``<name>`` is ``part-<name>.safetensors`` (tensors) and ``part-<name>.json``
(its manifest: the entry's model, processing and settings, the file's size and SHA-256,
and an ``extra`` JSON object saying what the part was computed from, which its reader
checks). Rewriting the entry (:func:`core.cache.store.save`) drops every derived part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from core.cache.reading import read_checked
from core.cache.store import PART_PREFIX, entry_dir, write_manifest, write_safetensors
from core.cache.tensors import tensors_from_buffer
from core.errors import CacheError
from core.model.weights import ModelMeta

__all__ = ["PART_PREFIX", "load_part", "part_on_disk", "save_part"]


def _part_names(name: str) -> tuple[str, str]:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a part name is letters, digits, '-' and '_', not {name!r}")
    return f"{PART_PREFIX}{name}.json", f"{PART_PREFIX}{name}.safetensors"


def save_part(
    cache_dir: Path,
    meta: ModelMeta,
    processing: str,
    settings_key: dict[str, Any],
    name: str,
    tensors: dict[str, Tensor],
    extra: dict[str, Any],
) -> Path:
    """Write a derived part ``name`` of an (existing) entry: ``tensors`` and the JSON-able
    ``extra`` (what the part was computed from, checked by its reader). Returns the
    entry directory. Rewriting the entry drops every derived part.
    """
    manifest, fname = _part_names(name)
    out = entry_dir(cache_dir, meta, processing)
    out.mkdir(parents=True, exist_ok=True)
    (out / manifest).unlink(missing_ok=True)
    record = write_safetensors(
        out, fname, {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    )
    write_manifest(
        out / manifest, meta, processing, settings_key, files={fname: record}, extra=extra
    )
    return out


def part_on_disk(cache_dir: Path, meta: ModelMeta, processing: str, name: str) -> bool:
    """Whether the entry has a derived part ``name`` (unchecked: :func:`load_part`
    verifies).
    """
    return (entry_dir(cache_dir, meta, processing) / _part_names(name)[0]).is_file()


def load_part(
    cache_dir: Path,
    meta: ModelMeta,
    processing: str,
    settings_key: dict[str, Any],
    name: str,
    mapped: bool = False,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read and verify the derived part ``name``: its ``extra`` and its tensors
    (``mapped``: views of a memory map, for a process answering one question; see
    :mod:`core.cache.reading`).

    Raises:
        CacheError: missing, stale, truncated or corrupted; the message says which.
    """
    manifest, fname = _part_names(name)
    out = entry_dir(cache_dir, meta, processing)
    info, blobs = read_checked(out, manifest, meta, processing, settings_key, None, mapped=mapped)
    try:
        return dict(info.get("extra") or {}), dict(tensors_from_buffer(blobs[fname]))
    except Exception as exc:  # any content that does not fit
        raise CacheError(f"The cache part {out / manifest} does not parse ({exc}).") from exc
