"""A model too big for one worker, swept in pieces: per-layer tasks, then one merge.

Each piece reads only its layers' tensors (and ``W_U``, the embedding and the final norm)
from the memory-mapped safetensors files (:class:`core.model.streamed.CheckpointReader`),
decomposes and projects them with the ordinary builder (:func:`core.cache.build.build_svd`)
and writes a *shard*: one safetensors file per kind plus a JSON manifest, in a folder
under the shared cache folder (``.shards/``), renamed into place when whole. A shard
that exists is read, not rebuilt, so a retried or repeated sweep redoes only what is
missing. The embedding kind is one more piece.

The merge concatenates the shards' components in layer order (rows are component-major,
so a layer's rows follow the previous layer's), computes the model's weights hash one
layer at a time (:func:`core.model.streamed.streamed_meta`) and writes the entry and its
checkpoint part with the ordinary cache writer; the tests hold it equal, byte for byte,
to a serial build of the whole model. The random controls draw the whole model in one
random stream, so a split sweep does not build them (the first page that needs them does);
each piece keeps its layers' control scales, so the merged checkpoint part can draw the
spectra's controls without the model, as a serial build's can.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from core.analysis import settings_key
from core.cache import checkpoint, store
from core.cache.build import build_svd
from core.cache.manifest import model_folder
from core.cache.tables import KindResult, kind_from_tensors, kind_tensors
from core.model.fingerprint import fingerprint
from core.model.streamed import CheckpointReader, header_meta, layer_weights, streamed_meta
from core.model.weights import process
from core.settings import Settings
from core.svd.control import control_scales
from core.svd.project import TopTokens, read_unembed, token_table

#: The piece that holds the embedding kind (the others are ``layers-A-B``).
EMBED_PART = "embed"
SHARD_MANIFEST = "shard.json"
CONTROL_SCALES_FILE = "control_scales.safetensors"
_TOPS_FIELDS = ("top_idx", "top_val", "bottom_idx", "bottom_val")


def plan(n_layers: int, per_task: int) -> list[tuple[int, int]]:
    """Layer ranges ``[a, b)`` of at most ``per_task`` layers covering ``0 .. n_layers``."""
    if per_task < 1:
        raise ValueError("per_task must be at least 1")
    return [(a, min(a + per_task, n_layers)) for a in range(0, n_layers, per_task)]


def part_name(layers: tuple[int, int] | None) -> str:
    """The shard folder's name: ``layers-A-B`` or :data:`EMBED_PART` (``None``)."""
    return EMBED_PART if layers is None else f"layers-{layers[0]:04d}-{layers[1]:04d}"


def shards_root(settings: Settings, source: Path) -> Path:
    """Where ``settings.model``'s shards go: keyed by the checkpoint's fingerprint, the
    processing and the settings that shape the content, so other weights or settings
    never reuse them.
    """
    fp = fingerprint(source) or "nofingerprint"
    key = json.dumps(settings_key(settings), sort_keys=True)
    tag = hashlib.sha256(f"{fp}|{key}".encode()).hexdigest()[:20]
    return (
        Path(settings.cache_dir).resolve()
        / ".shards"
        / model_folder(settings.model)
        / f"{tag}-{settings.processing}"
    )


def build_shard(
    settings: Settings, source: Path, layers: tuple[int, int] | None
) -> tuple[Path, bool]:
    """Build (or find) one piece of ``source``: ``layers = (a, b)`` decomposes every
    per-layer kind of layers ``a .. b-1``; ``None`` the embedding. Returns the shard's
    folder and whether it was built now (``False``: found whole).
    """
    out = shards_root(settings, source) / part_name(layers)
    if (out / SHARD_MANIFEST).is_file():
        return out, False
    reader = CheckpointReader(source)
    meta = header_meta(reader, settings.model)
    # The embedding piece needs no layer; one is read to build a valid view (its kinds
    # are not decomposed).
    rng = range(*layers) if layers is not None else range(0, 1)
    raw = layer_weights(reader, meta, rng)
    weights = process(raw, settings.processing)
    kinds = [k for k in settings.kinds if k in weights.kinds()]
    kinds = [k for k in kinds if (k == "embed") == (layers is None)]
    svd = build_svd(weights, settings.replace(kinds=tuple(kinds)))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index: dict[str, Any] = {}
    for kind, res in svd.kinds.items():
        save_file(kind_tensors(res), str(tmp / f"{kind}.safetensors"))
        index[kind] = {
            "components": [list(c) for c in res.decomposition.components],
            "n_projected": res.n_projected,
        }
    if layers is not None:  # merged into the checkpoint part (core.svd.control)
        save_file(control_scales(weights), str(tmp / CONTROL_SCALES_FILE))
    manifest = {"layers": None if layers is None else list(layers), "kinds": index}
    (tmp / SHARD_MANIFEST).write_text(json.dumps(manifest))
    try:
        os.replace(tmp, out)
    except OSError:  # another attempt finished the same shard first: keep that one
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / SHARD_MANIFEST).is_file():
            raise
        return out, False
    return out, True


def _read_shard(path: Path) -> dict[str, KindResult]:
    info = json.loads((path / SHARD_MANIFEST).read_text())
    start = 0 if info["layers"] is None else int(info["layers"][0])
    out = {}
    for kind, entry in info["kinds"].items():
        # The piece numbered its layers from 0; the model numbers them from ``start``.
        comps = [[int(c[0]) + start, c[1]] for c in entry["components"]]
        t = load_file(str(path / f"{kind}.safetensors"))
        out[kind] = kind_from_tensors(kind, comps, int(entry["n_projected"]), t, False)
    return out


def _concat(parts: list[KindResult]) -> KindResult:
    if len(parts) == 1:
        return parts[0]
    n = {p.n_projected for p in parts}
    if len(n) != 1:
        raise ValueError("shards of one kind project different numbers of directions")
    d0 = parts[0].decomposition

    def cat(name: str) -> torch.Tensor | None:
        ts = [getattr(p.decomposition, name) for p in parts]
        return None if ts[0] is None else torch.cat(ts)

    d = replace(
        d0,
        components=tuple(c for p in parts for c in p.decomposition.components),
        S=torch.cat([p.decomposition.S for p in parts]),
        U=cat("U"),
        V=cat("V"),
        degenerate=torch.cat([p.decomposition.degenerate for p in parts]),
    )
    tops = TopTokens(*(torch.cat([getattr(p.tops, f) for p in parts]) for f in _TOPS_FIELDS))
    return KindResult(d, tops, n.pop())


def merge(settings: Settings, source: Path, ranges: list[tuple[int, int]]) -> Path:
    """Assemble the entry of ``source`` from its shards (all built) and write it with its
    checkpoint part; returns the entry folder. The shards are removed after.
    """
    root = shards_root(settings, source)
    pieces = [_read_shard(root / part_name(r)) for r in ranges]
    embed = _read_shard(root / EMBED_PART)
    reader = CheckpointReader(source)
    meta = streamed_meta(reader, settings.model)
    raw = layer_weights(reader, meta, range(0, 1))
    weights = process(raw, settings.processing)
    kinds: dict[str, KindResult] = {}
    for kind in settings.kinds:
        if kind in embed:
            kinds[kind] = embed[kind]
        elif kind in pieces[0]:
            kinds[kind] = _concat([p[kind] for p in pieces])
    svd = store.ModelSVD(meta, settings.processing, settings.k, kinds)
    key = settings_key(settings)
    entry = store.save(svd, settings.cache_dir, key)
    fp = fingerprint(source)
    if fp is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(source))
        tokens = token_table(tokenizer, meta.d_vocab, raw.W_U, norm_W_U=weights.W_U)
        W_R = read_unembed(weights.W_U, settings.projection)
        scales = _merged_scales([root / part_name(r) for r in ranges])
        part = checkpoint.CheckpointPart(fp, W_R, weights.W_E, tokens, scales)
        checkpoint.save_checkpoint(settings.cache_dir, meta, settings.processing, key, part)
    shutil.rmtree(root, ignore_errors=True)
    return entry


def _merged_scales(shards: list[Path]) -> dict[str, torch.Tensor] | None:
    """The pieces' control scales joined in layer order (``None`` when a piece has none:
    built before they were kept; the controls then load the model).
    """
    files = [path / CONTROL_SCALES_FILE for path in shards]
    if not all(f.is_file() for f in files):
        return None
    tables = [load_file(str(f)) for f in files]
    return {name: torch.cat([t[name] for t in tables]) for name in tables[0]}


def cached_entry(settings: Settings, source: Path) -> Path | None:
    """The entry of ``source`` when the cache already holds it (found by fingerprint)."""
    fp = fingerprint(source)
    if fp is None:
        return None
    key = settings_key(settings)
    hit = checkpoint.find_by_fingerprint(
        settings.cache_dir, settings.model, settings.processing, key, fp
    )
    if hit is None:
        return None
    return store.entry_dir(settings.cache_dir, hit[0].meta, settings.processing)


def elapsed(t0: float) -> float:
    """Seconds since ``t0`` (``time.perf_counter``)."""
    return time.perf_counter() - t0
