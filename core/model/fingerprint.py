"""A checkpoint's fingerprint: what a cache entry is checked against without loading it.

The cache is keyed by a hash of every weight (:func:`core.model.weights.hash_tensors`),
which needs the model loaded: 10-20 s through TransformerBridge for an answer the cache
holds. The fingerprint reads only file metadata and small files: each weight file's
size and modification time (nanoseconds), the SHA-256 of each safetensors header (names,
dtypes, shapes and offsets of every tensor), and the SHA-256 of the config and the
tokenizer files. A rewritten weight file changes its mtime even when its size and header
stay the same, so the cache notices it and falls back to loading and hashing the weights
(which keep the entry when the bytes turn out unchanged). What it cannot see is a file
whose bytes change while its mtime is set back to the old value.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: Weight files by suffix; safetensors headers are hashed too.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
#: Small files hashed whole: what shapes the model's config and its token table.
SMALL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
#: A safetensors header longer than this is not read (it would not be a real one).
_MAX_HEADER = 1 << 27


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safetensors_header(path: Path) -> str | None:
    """SHA-256 of the 8-byte length and JSON header, or ``None`` when unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            n = int.from_bytes(head, "little")
            if n > _MAX_HEADER:
                return None
            return _sha256(head + f.read(n))
    except OSError:
        return None


def fingerprint(directory: Path | str) -> str | None:
    """A digest of ``directory``'s checkpoint files' metadata, or ``None`` when it has no
    weight file (nothing to check an entry against).

    Costs a ``stat`` per file and reading the small files and the safetensors headers:
    milliseconds, whatever the model's size.
    """
    root = Path(directory)
    parts: dict[str, Any] = {}
    weights = 0
    try:
        entries = sorted(p for p in root.iterdir() if p.is_file())
    except OSError:
        return None
    for p in entries:
        if p.name.endswith(WEIGHT_SUFFIXES) or p.name.endswith(".index.json"):
            st = p.stat()  # follows the hub cache's symlinks to the blobs
            item: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            if p.suffix == ".safetensors":
                item["header"] = _safetensors_header(p)
            weights += p.suffix in WEIGHT_SUFFIXES
            parts[p.name] = item
        elif p.name in SMALL_FILES:
            try:
                parts[p.name] = {"sha256": _sha256(p.read_bytes())}
            except OSError:
                return None
    if not weights:
        return None
    return _sha256(json.dumps(parts, sort_keys=True).encode())
