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
first use, so a precompute does not pay for them. The checkpoint part
(``unembed.safetensors``, ``tokens.json`` and ``checkpoint.json``) is a third: the
unembedding and embedding of the processed view, the token table, and the checkpoint's
fingerprint (:mod:`core.model.fingerprint`), so that an entry can be found and answer
queries without loading the model (:func:`find_by_fingerprint`). Each file is written to a temporary
name and renamed, so a reader sees either a whole part or none; a part whose manifest
or files do not check out is reported as invalid and rebuilt by the caller.

The model folder is a hash of the model's name (:func:`core.cache.manifest.model_folder`),
and every entry path is checked to stay inside the cache folder. A reader owns what it
reads: each file is read into memory through one descriptor, checked (its SHA-256, or the
stamp of an earlier check, against that descriptor), and parsed from those bytes, so a
file truncated or rewritten later can neither fault the process (no memory map) nor
change the values it holds. Leftover ``.tmp`` files of a killed writer are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from core.cache.manifest import check_manifest, inside, model_folder
from core.cache.reading import (
    FORMAT_VERSION,
    VERIFIED,
    LazyTable,
    atomic_write_bytes,
    read_checked,
    read_group,
)
from core.cache.tables import KindResult, kind_tensors
from core.cache.tensors import tensors_from_buffer
from core.errors import CacheError
from core.model.weights import ModelMeta
from core.svd.project import TokenTable, token_table_from_strings

CONTROLS_MANIFEST = "controls.json"
CHECKPOINT_MANIFEST = "checkpoint.json"
UNEMBED_FILE = "unembed.safetensors"
TOKENS_FILE = "tokens.json"
#: Derived parts (``part-<name>.json`` + ``part-<name>.safetensors``, e.g. the search
#: index's statistics): computed from the entry by a later stage and dropped whenever
#: the entry is rewritten.
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
            optional, see :func:`core.analysis.controls`).
    """

    meta: ModelMeta
    processing: str
    k: int
    # A union rather than MutableMapping: a runtime type check of a mapping samples an
    # item, which would read a lazy table's file.
    kinds: dict[str, KindResult] | LazyTable
    controls: dict[str, KindResult] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointPart:
    """What answers queries in place of the loaded model (the entry's checkpoint part).

    Attributes:
        fingerprint: the checkpoint's fingerprint when the part was written.
        W_U: the unembedding as read ``[d_model, d_vocab]`` (the processed view's, with
            the entry's projection applied: :attr:`core.analysis.Analysis.W_U`).
        W_E: the embedding ``[d_vocab, d_model]``.
        tokens: the token table (its ``norm`` values are kept with ``W_U``).
    """

    fingerprint: str
    W_U: Tensor
    W_E: Tensor
    tokens: TokenTable


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


def _write_tables(
    out: Path, tables: dict[str, Mapping[str, KindResult]]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Write each kind's tensors; returns the files' sizes and hashes and the groups' index."""
    files: dict[str, dict[str, Any]] = {}
    index: dict[str, Any] = {}
    for group, table in tables.items():
        for kind, res in table.items():
            fname = f"{kind}.control.safetensors" if group == "controls" else f"{kind}.safetensors"
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{fname}.", suffix=".tmp")
            os.close(fd)
            try:
                save_file(kind_tensors(res), tmp)
                os.replace(tmp, out / fname)
            finally:
                Path(tmp).unlink(missing_ok=True)
            files[fname] = {"size": (out / fname).stat().st_size, "sha256": _sha256(out / fname)}
            index.setdefault(group, {})[kind] = {
                "file": fname,
                "components": [list(c) for c in res.decomposition.components],
                "n_projected": res.n_projected,
            }
    return files, index


def _manifest(meta: ModelMeta, processing: str, settings_key: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "model": meta.to_json(),
        "processing": processing,
        "settings": settings_key,
    }


def save(svd: ModelSVD, cache_dir: Path, settings_key: dict[str, Any]) -> Path:
    """Write ``svd`` atomically (its controls too, when it holds any); returns the entry
    directory.

    ``settings_key`` holds the settings that shape the content (k, n_project, seed...):
    an entry written under other settings is stale for a reader with these.
    """
    out = entry_dir(cache_dir, svd.meta, svd.processing)
    out.mkdir(parents=True, exist_ok=True)
    _clean_tmp(out)
    # The entry is invalid until rewritten, and controls of older content with it.
    (out / "meta.json").unlink(missing_ok=True)
    (out / CONTROLS_MANIFEST).unlink(missing_ok=True)
    (out / CHECKPOINT_MANIFEST).unlink(missing_ok=True)
    for derived in out.glob(f"{PART_PREFIX}*.json"):
        derived.unlink(missing_ok=True)
    files, index = _write_tables(out, {"kinds": svd.kinds})
    info = {
        **_manifest(svd.meta, svd.processing, settings_key),
        "k": svd.k,
        "files": files,
        "kinds": index.get("kinds", {}),
    }
    atomic_write_bytes(out / "meta.json", json.dumps(info, indent=1).encode())
    if svd.controls:
        save_controls(svd, cache_dir, settings_key)
    return out


def save_controls(svd: ModelSVD, cache_dir: Path, settings_key: dict[str, Any]) -> Path:
    """Write ``svd.controls`` as the controls part of its (existing) entry; returns the
    entry directory. The kinds are not rewritten.
    """
    out = entry_dir(cache_dir, svd.meta, svd.processing)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONTROLS_MANIFEST).unlink(missing_ok=True)
    files, index = _write_tables(out, {"controls": svd.controls})
    info = {
        **_manifest(svd.meta, svd.processing, settings_key),
        "files": files,
        "controls": index.get("controls", {}),
    }
    atomic_write_bytes(out / CONTROLS_MANIFEST, json.dumps(info, indent=1).encode())
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
    :func:`core.analysis.controls` reads or rebuilds them on first use, so an answer that
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


def save_checkpoint(
    cache_dir: Path,
    meta: ModelMeta,
    processing: str,
    settings_key: dict[str, Any],
    part: CheckpointPart,
) -> Path:
    """Write the checkpoint part of an (existing) entry; returns the entry directory."""
    out = entry_dir(cache_dir, meta, processing)
    out.mkdir(parents=True, exist_ok=True)
    (out / CHECKPOINT_MANIFEST).unlink(missing_ok=True)
    tensors = {"W_U": part.W_U, "W_E": part.W_E}
    if part.tokens.norm is not None:  # the norm filter's values: W_U may be rescaled
        tensors["norm"] = part.tokens.norm
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{UNEMBED_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, out / UNEMBED_FILE)
    finally:
        Path(tmp).unlink(missing_ok=True)
    table: dict[str, Any] = {"raw": list(part.tokens.raw), "display": list(part.tokens.display)}
    if part.tokens.trained is not None:  # the under-trained tokens, detected at the build
        table["undertrained"] = (~part.tokens.trained).nonzero()[:, 0].tolist()
    atomic_write_bytes(out / TOKENS_FILE, json.dumps(table).encode())
    files = {
        f: {"size": (out / f).stat().st_size, "sha256": _sha256(out / f)}
        for f in (UNEMBED_FILE, TOKENS_FILE)
    }
    info = {
        **_manifest(meta, processing, settings_key),
        "fingerprint": part.fingerprint,
        "files": files,
    }
    atomic_write_bytes(out / CHECKPOINT_MANIFEST, json.dumps(info, indent=1).encode())
    return out


def find_by_fingerprint(
    cache_dir: Path,
    name: str,
    processing: str,
    settings_key: dict[str, Any],
    fingerprint: str,
    lazy: bool = False,
) -> tuple[ModelSVD, CheckpointPart] | None:
    """The valid entry of model ``name`` whose checkpoint part carries ``fingerprint``,
    or ``None``: a miss, a stale entry or a damaged one (the caller loads the model).

    Reads no weight of the model, only the entry (checked as :func:`load` does).
    """
    folder = Path(cache_dir) / model_folder(name)
    for mpath in sorted(folder.glob(f"*-{processing}/{CHECKPOINT_MANIFEST}")):
        try:
            info = json.loads(mpath.read_text())
            if not isinstance(info, dict) or info.get("fingerprint") != fingerprint:
                continue
            meta = ModelMeta(**info["model"])
            svd = load(cache_dir, meta, processing, settings_key, lazy=lazy)
            out = mpath.parent
            _, blobs = read_checked(
                out, CHECKPOINT_MANIFEST, meta, processing, settings_key, None, mapped=lazy
            )
            t = tensors_from_buffer(blobs[UNEMBED_FILE])
            table = json.loads(bytes(blobs[TOKENS_FILE]))
            trained = None
            if "undertrained" in table:
                trained = torch.ones(len(table["raw"]), dtype=torch.bool)
                trained[torch.tensor(table["undertrained"], dtype=torch.long)] = False
            tokens = token_table_from_strings(
                table["raw"], table["display"], trained, t.get("norm")
            )
            if t["W_U"].shape != (meta.d_model, meta.d_vocab) or len(tokens.raw) != meta.d_vocab:
                continue
        except (CacheError, OSError, ValueError, KeyError, TypeError):
            continue
        return svd, CheckpointPart(fingerprint, t["W_U"], t["W_E"], tokens)
    return None


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
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{fname}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, out / fname)
    finally:
        Path(tmp).unlink(missing_ok=True)
    info = {
        **_manifest(meta, processing, settings_key),
        "files": {fname: {"size": (out / fname).stat().st_size, "sha256": _sha256(out / fname)}},
        "extra": extra,
    }
    atomic_write_bytes(out / manifest, json.dumps(info, indent=1).encode())
    return out


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
