"""Query words tokenized without parsing the tokenizer: the encodings of every word the
vocabulary spells, as a part of the cache entry.

A cached search on SmolLM2-135M spent a third of a second parsing ``tokenizer.json``
(``tokenizers.Tokenizer.from_file``, holding the GIL) to encode two or three words. A
query concept is encoded as itself and with a leading space (:func:`parse_query`), and
a random query of the significance null draws whole-word tokens; so the first
cache-only index build encodes, with the checkpoint's own tokenizer, ``w`` and ``" " + w``
for every token's stripped text ``w`` and every English word search knows
(:func:`core.words.known_words`: a word of several tokens such as ``flames`` on the demo
model) and keeps the ids (:class:`MemoTokenizer`). Later calls read those and load the
tokenizer only for a text the memo does not hold: the same ids either way, as they are
the tokenizer's own.

The memo also keeps each of those words' English Zipf frequency
(:func:`core.svd.tokens.english_zipf`), which picks a query's significance null: reading
``wordfreq``'s list for two words took about 0.3 s of a cached search's 2.4 s.

The memo is checked against the SHA-256 of the tokenizer files it was built from, so an
edited tokenizer is noticed even when the weights (and so the entry) stay the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.analysis import settings_key
from core.cache import parts as cache_parts
from core.errors import CacheError
from core.model.tokenizer import FileTokenizer
from core.svd.tokens import english_zipf
from core.words import known_words

PART = "searchtokens"
#: Bumped when the memo's content changes.
VERSION = 3
#: Encodings longer than this are not kept (a fallback to the tokenizer).
MAX_IDS = 8
#: What the tokenizer of a cache-only analysis reads (core.model.tokenizer).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class MemoTokenizer:
    """The tokenizer interface search uses (``encode``, ``unk_token``, ``unk_token_id``),
    answered from the memo where it holds the text, else by the real tokenizer, loaded on
    first need through ``load``; and :meth:`zipf`, a held word's English frequency
    (``zipf``: one per word, ``None`` where ``wordfreq`` was missing when it was built).
    """

    def __init__(
        self,
        words: Sequence[str],
        plain: Tensor,
        spaced: Tensor,
        unk_token: str | None,
        unk_token_id: int | None,
        load: Callable[[], Any],
        zipf: Tensor | None = None,
    ) -> None:
        self._row: dict[str, int] = {}
        for i, w in enumerate(words):
            if w:
                self._row.setdefault(w, i)
        self._plain, self._spaced, self._zipf = plain, spaced, zipf
        self.unk_token, self.unk_token_id = unk_token, unk_token_id
        self._load: Callable[[], Any] | None = load
        self._tok: Any = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> Any:
        """The real tokenizer (loaded now if need be)."""
        with self._lock:
            if self._load is not None:
                self._tok, self._load = self._load(), None
        return self._tok

    def memo(self, text: str) -> list[int] | None:
        """The memo's ids of ``text``, or ``None`` when it does not hold them."""
        spaced = text.startswith(" ")
        row = self._row.get(text[1:] if spaced else text)
        if row is None:
            return None
        ids = (self._spaced if spaced else self._plain)[row]
        n = int(ids[0])
        return None if n < 0 else [int(i) for i in ids[1 : 1 + n]]

    def zipf(self, text: str) -> float | None:
        """:func:`~core.svd.tokens.english_zipf` of ``text`` where the memo holds the
        word (it is of the stripped, lower-cased text, as the word's), else ``None``.
        """
        row = self._row.get(text.strip())
        return None if row is None or self._zipf is None else float(self._zipf[row])

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``: the memo's, else the tokenizer's."""
        ids = None if add_special_tokens else self.memo(text)
        if ids is None:
            return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))
        return ids


def stripped_words(raw: Sequence[str]) -> list[str]:
    """What the memo is keyed by: each token's text without surrounding whitespace, then
    the known English words (:func:`core.words.known_words`), sorted.
    """
    return [t.strip() for t in raw] + sorted(known_words())


def _encodings(tokenizer: Any, texts: Sequence[str]) -> Tensor:
    """``[len(texts), 1 + MAX_IDS]`` int32: the number of ids (-1: longer than
    ``MAX_IDS``, not kept), then the ids, padded with 0.
    """
    out = torch.zeros(len(texts), 1 + MAX_IDS, dtype=torch.int32)
    for j, text in enumerate(texts):
        if not text.strip():
            out[j, 0] = -1  # never looked up (empty words are not keys)
            continue
        ids = list(tokenizer.encode(text, add_special_tokens=False))
        if len(ids) > MAX_IDS:
            out[j, 0] = -1
        else:
            out[j, 0] = len(ids)
            out[j, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.int32)
    return out


def _zipfs(words: Sequence[str]) -> Tensor | None:
    """``[len(words)]`` float64: each word's :func:`english_zipf` (0 for the empty
    word); ``None`` without ``wordfreq``.
    """
    try:
        return torch.tensor([english_zipf(w) if w else 0.0 for w in words], dtype=torch.float64)
    except ValueError:
        return None


def _digest(source: Path) -> str:
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        p = source / name
        h.update(name.encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"<none>")
    return h.hexdigest()


def memo_tokenizer(analysis: Any, mapped: bool) -> Any:
    """The tokenizer a cache-only ``analysis`` reads queries with: a
    :class:`MemoTokenizer` over the entry's memo (built and saved now when missing, with
    the checkpoint's tokenizer), or the analysis's own tokenizer where no memo can be
    had (no tokenizer file, a tokenizer other than :class:`FileTokenizer`).
    """
    s = analysis.settings
    source = Path(analysis.source.path)
    try:
        digest = _digest(source)
    except OSError:
        return analysis.tokenizer
    words = stripped_words(analysis.tokens.raw)
    key = settings_key(s)
    extra: dict[str, Any] = {
        "version": VERSION,
        "max_ids": MAX_IDS,
        "d_vocab": len(analysis.tokens.raw),
        "words_sha256": hashlib.sha256("\n".join(words).encode()).hexdigest(),
        "tokenizer_sha256": digest,
    }
    with contextlib.suppress(CacheError, KeyError, ValueError, TypeError, OSError):
        stored, t = cache_parts.load_part(
            s.cache_dir, analysis.meta, s.processing, key, PART, mapped
        )
        unk, unk_id = stored.pop("unk_token"), stored.pop("unk_token_id")
        shape = (len(words), 1 + MAX_IDS)
        zipf = t.get("zipf")
        if (
            stored == extra
            and t["plain"].shape == shape
            and t["spaced"].shape == shape
            and (zipf is None or zipf.shape == (len(words),))
        ):
            return MemoTokenizer(
                words, t["plain"], t["spaced"], unk, unk_id, lambda: analysis.tokenizer, zipf
            )
    tok = analysis.tokenizer
    if not isinstance(tok, FileTokenizer):
        return tok
    plain = _encodings(tok, words)
    spaced = _encodings(tok, [" " + w if w else "" for w in words])
    zipf = _zipfs(words)
    memo = MemoTokenizer(words, plain, spaced, tok.unk_token, tok.unk_token_id, lambda: tok, zipf)
    if analysis.persist and not analysis.filling:
        extra.update(unk_token=tok.unk_token, unk_token_id=tok.unk_token_id)
        with contextlib.suppress(OSError, CacheError, ValueError):
            cache_parts.save_part(
                s.cache_dir,
                analysis.meta,
                s.processing,
                key,
                PART,
                {"plain": plain, "spaced": spaced} | ({} if zipf is None else {"zipf": zipf}),
                extra,
            )
    return memo
