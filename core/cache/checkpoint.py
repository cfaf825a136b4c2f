"""The checkpoint part of a cache entry: what answers queries in place of the model.

Files, beside the entry's kinds: ``unembed.safetensors`` (the processed view's
unembedding as read, its embedding, the norm filter's values, the scales the random
controls are drawn with, ``control.<matrix>``, and for a quantized checkpoint each
component's noise floor, ``floor.<kind>``), ``tokens.json`` (the
token table) and ``checkpoint.json`` (the manifest, with the checkpoint's fingerprint:
:mod:`core.model.fingerprint`). :func:`find_by_fingerprint` finds an entry from the
fingerprint alone, so a cached answer reads no weight and imports neither transformers
nor transformer_lens. Rewriting the entry (:func:`core.cache.store.save`) drops the part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.cache.manifest import model_folder
from core.cache.reading import atomic_write_bytes, read_checked
from core.cache.store import (
    CHECKPOINT_MANIFEST,
    ModelSVD,
    entry_dir,
    file_record,
    load,
    write_manifest,
    write_safetensors,
)
from core.cache.tensors import tensors_from_buffer
from core.errors import CacheError
from core.model.weights import ModelMeta
from core.svd.project import TokenTable, token_table_from_strings

UNEMBED_FILE = "unembed.safetensors"
TOKENS_FILE = "tokens.json"
CONTROL_PREFIX = "control."
FLOOR_PREFIX = "floor."

__all__ = [
    "CHECKPOINT_MANIFEST",
    "TOKENS_FILE",
    "UNEMBED_FILE",
    "CheckpointPart",
    "find_by_fingerprint",
    "save_checkpoint",
]


@dataclass(frozen=True)
class CheckpointPart:
    """What answers queries in place of the loaded model (the entry's checkpoint part).

    Attributes:
        fingerprint: the checkpoint's fingerprint when the part was written.
        W_U: the unembedding as read ``[d_model, d_vocab]`` (the processed view's, with
            the entry's projection applied: :attr:`core.analysis.Analysis.W_U`).
        W_E: the embedding ``[d_vocab, d_model]``.
        tokens: the token table (its ``norm`` values are kept with ``W_U``).
        control_scales: :func:`core.svd.control.control_scales` of the processed view, so
            the spectra's random controls are drawn without the model (``None`` in parts
            written before they were kept).
        noise_floors: per kind, :func:`core.model.noise.noise_floor` of each component
            in the decomposition's order (``None``: not quantized, or not kept).
    """

    fingerprint: str
    W_U: Tensor
    W_E: Tensor
    tokens: TokenTable
    control_scales: dict[str, Tensor] | None = None
    noise_floors: dict[str, Tensor] | None = None


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
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}
    # Kept in their own dtype: the control's draw is in that dtype.
    for name, std in (part.control_scales or {}).items():
        tensors[f"{CONTROL_PREFIX}{name}"] = std.detach().cpu().contiguous()
    for kind, floors in (part.noise_floors or {}).items():
        tensors[f"{FLOOR_PREFIX}{kind}"] = floors.detach().cpu().float().contiguous()
    files = {UNEMBED_FILE: write_safetensors(out, UNEMBED_FILE, tensors)}
    table: dict[str, Any] = {"raw": list(part.tokens.raw), "display": list(part.tokens.display)}
    if part.tokens.trained is not None:  # the under-trained tokens, detected at the build
        table["undertrained"] = (~part.tokens.trained).nonzero()[:, 0].tolist()
    atomic_write_bytes(out / TOKENS_FILE, json.dumps(table).encode())
    files[TOKENS_FILE] = file_record(out, TOKENS_FILE)
    write_manifest(
        out / CHECKPOINT_MANIFEST,
        meta,
        processing,
        settings_key,
        fingerprint=part.fingerprint,
        files=files,
    )
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
        part = CheckpointPart(
            fingerprint,
            t["W_U"],
            t["W_E"],
            tokens,
            _group(t, CONTROL_PREFIX),
            _group(t, FLOOR_PREFIX),
        )
        return svd, part
    return None


def _group(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor] | None:
    """The tensors named ``prefix<name>``, by ``name`` (``None`` when there are none)."""
    out = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    return out or None
