"""Token strings and the token filters: which tokens a direction's ends may show.

Filters (:data:`TOKEN_FILTERS`), each a mask over the vocabulary; several intersect:

* ``alpha``: the text (ignoring one leading space) is alphabetic.
* ``ascii``: the text is printable ASCII.
* ``trained``: not detected as under-trained (:mod:`core.svd.undertrained`).
* ``frequent``: the text (stripped, lower-cased) is an English word at least as frequent
  as :data:`FREQUENT_ZIPF` on the Zipf scale (``log10`` of occurrences per billion
  words; 3 is once per million) in the ``wordfreq`` package's ``en`` list (a real
  word-frequency source, shipped with the package: no download).
* ``norm`` (or ``norm:X``): drops the :data:`NORM_DROP_PERCENT` (or ``X``) per cent of
  the vocabulary with the largest unembedding norms, where rare and under-trained tokens
  sit (on SmolLM2-135M " strugg", "MetaInfo", "ChannelType" are in the top 0.25% by norm,
  while " fire" and " king" have smaller norms than 98% of the vocabulary).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

#: Token filter names (``norm`` also takes a percentage: ``norm:5``).
TOKEN_FILTERS: tuple[str, ...] = ("alpha", "ascii", "trained", "frequent", "norm")
#: Per cent of the vocabulary, by largest unembedding norm, that ``norm`` drops.
NORM_DROP_PERCENT = 2.0
#: Zipf frequency (``wordfreq``) from which a token's word counts as ``frequent``.
FREQUENT_ZIPF = 3.0


def parse_filter(name: str) -> tuple[str, float | None]:
    """``(filter, percentage)``: ``"norm:5"`` gives ``("norm", 5.0)``, other names
    ``(name, None)``.

    Raises:
        ValueError: an unknown filter or a percentage outside ``(0, 100)``.
    """
    base, sep, arg = name.partition(":")
    if base not in TOKEN_FILTERS or (sep and base != "norm"):
        raise ValueError(
            f"unknown token filter {name!r}: use {', '.join(TOKEN_FILTERS)} (or norm:PERCENT)"
        )
    if not sep:
        return base, None
    try:
        pct = float(arg)
    except ValueError:
        pct = float("nan")
    if not 0.0 < pct < 100.0:
        raise ValueError(f"norm:{arg} needs a percentage between 0 and 100, like norm:2")
    return base, pct


def norm_mask(norm: Float[Tensor, " d_vocab"], percent: float) -> Bool[Tensor, " d_vocab"]:
    """Tokens outside the ``floor(percent / 100 * d_vocab)`` largest ``norm`` values
    (among equal norms the lower id is dropped first).
    """
    V = norm.shape[0]
    drop = int(math.floor(percent / 100.0 * V + 1e-9))
    keep = torch.ones(V, dtype=torch.bool)
    if drop:
        order = torch.sort(norm.float(), descending=True, stable=True).indices
        keep[order[:drop]] = False
    return keep


@lru_cache(maxsize=1)
def _english_frequencies() -> dict[str, float]:
    try:
        import wordfreq
    except ImportError as exc:  # pinned in requirements.txt
        raise ValueError(
            "Word frequencies (the frequent filter, search's random queries) need the "
            "wordfreq package; pip install wordfreq."
        ) from exc
    return dict(wordfreq.get_frequency_dict("en"))


def english_zipf(text: str) -> float:
    """Zipf frequency of ``text`` in English: ``log10`` of its occurrences per billion
    words in ``wordfreq``'s ``en`` list, 0 when unlisted. ``text`` is stripped and
    lower-cased; a phrase not listed whole counts as its rarest word.

    Raises:
        ValueError: the package ``wordfreq`` is missing.
    """
    freq = _english_frequencies()
    key = text.strip().lower()
    f = freq.get(key)
    if f is None and " " in key:
        f = min(freq.get(w, 0.0) for w in key.split())
    return math.log10(f) + 9.0 if f else 0.0


def frequent_mask(raw: Sequence[str], zipf: float = FREQUENT_ZIPF) -> Bool[Tensor, " d_vocab"]:
    """Tokens whose text, stripped and lower-cased, has a ``wordfreq`` English frequency
    of at least ``10 ** (zipf - 9)`` (occurrences per word).
    """
    freq = _english_frequencies()
    cut = 10.0 ** (zipf - 9.0)
    return torch.tensor([freq.get(t.strip().lower(), 0.0) >= cut for t in raw], dtype=torch.bool)


@dataclass(frozen=True)
class TokenTable:
    """Readable strings for every token id, and masks for the token filters.

    Attributes:
        raw: what ``tokenizer.decode([i])`` gives (leading space kept), for JSON output.
        display: readable form: a leading space shown as ``␣``, undecodable bytes as
            ``<0xNN>``, control characters escaped.
        ascii: tokens whose text is printable ASCII.
        alpha: tokens whose text (ignoring one leading space) is alphabetic.
        trained: tokens not detected as under-trained (:mod:`core.svd.undertrained`);
            ``None`` when the tokenizer offers no reference of unused tokens, and then
            the ``trained`` filter keeps every token.
        norm: each token's unembedding norm ``||W_U[:, t]||`` (of the view directions
            are read from, before any projection's centring or scaling); ``None`` when
            not known, and then the ``norm`` filter keeps every token.
    """

    raw: tuple[str, ...]
    display: tuple[str, ...]
    ascii: Bool[Tensor, " d_vocab"]
    alpha: Bool[Tensor, " d_vocab"]
    trained: Bool[Tensor, " d_vocab"] | None = None
    norm: Float[Tensor, " d_vocab"] | None = None
    # Masks computed on first use (``frequent``, ``norm:X``); deterministic from the
    # fields, so filling it keeps a shared table read-only.
    _memo: dict[str, Tensor] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.norm is not None and self.norm.shape != self.ascii.shape:
            raise ValueError("norm must hold one value per token")

    def filter_mask(self, name: str) -> Bool[Tensor, " d_vocab"]:
        """The mask of one filter (see the module docstring; :func:`parse_filter`)."""
        base, pct = parse_filter(name)
        if base in ("alpha", "ascii", "trained"):
            m = getattr(self, base)
            return torch.ones_like(self.ascii) if m is None else m
        key = base if pct is None else f"{base}:{pct}"
        hit = self._memo.get(key)
        if hit is None:
            if base == "frequent":
                hit = frequent_mask(self.raw)
            elif self.norm is None:
                hit = torch.ones_like(self.ascii)
            else:
                hit = norm_mask(self.norm, NORM_DROP_PERCENT if pct is None else pct)
            self._memo[key] = hit
        return hit

    def mask(self, filters: Sequence[str]) -> Bool[Tensor, " d_vocab"] | None:
        """The intersection of the named filters, or ``None`` for none.

        Raises:
            ValueError: an unknown filter.
        """
        out: Tensor | None = None
        for f in filters:
            m = self.filter_mask(f)
            out = m if out is None else out & m
        return out


_BYTE_DECODER: dict[str, int] | None = None


def _byte_decoder() -> dict[str, int]:
    # GPT-2's reversible byte <-> printable-unicode map.
    global _BYTE_DECODER
    if _BYTE_DECODER is None:
        bs = (
            list(range(ord("!"), ord("~") + 1))
            + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1))
        )
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        _BYTE_DECODER = {chr(c): b for b, c in zip(bs, cs)}
    return _BYTE_DECODER


def render_token(piece: str, decoded: str) -> str:
    """Readable form of one token from its vocabulary ``piece`` and ``decode`` output."""
    text = decoded
    if "\ufffd" in decoded:
        # A partial UTF-8 sequence: show its bytes instead of a replacement character.
        dec = _byte_decoder()
        if piece and all(ch in dec for ch in piece):
            raw = bytes(dec[ch] for ch in piece)
            text = "".join(chr(b) if 32 <= b < 127 else f"<0x{b:02X}>" for b in raw)
        else:
            text = piece
    out = []
    for i, ch in enumerate(text):
        if ch == " " and i == 0:
            out.append("␣")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch).startswith("C") and ch != "\ufffd":
            out.append(f"<0x{ord(ch):02X}>")
        else:
            out.append(ch)
    return "".join(out) or "∅"


def token_table(
    tokenizer: Any,
    d_vocab: int,
    W_U: Float[Tensor, "d_model d_vocab"] | None = None,
    norm_W_U: Float[Tensor, "d_model d_vocab"] | None = None,
) -> TokenTable:
    """Readable strings and filter masks for ids ``0 .. d_vocab-1``.

    Ids past the tokenizer's vocabulary (padded embedding rows) render as ``<pad:N>``.
    With ``W_U`` the ``trained`` mask is detected from it (see
    :mod:`core.svd.undertrained`); the ``norm`` column norms come from ``norm_W_U``
    (the view directions are read from), else from ``W_U``.
    """
    n_tok = len(tokenizer)
    ids = list(range(min(n_tok, d_vocab)))
    pieces = tokenizer.convert_ids_to_tokens(ids)
    decoded = [tokenizer.decode([i]) for i in ids]
    decoded += [f"<pad:{i}>" for i in range(len(ids), d_vocab)]
    pieces = list(pieces) + decoded[len(ids) :]
    display = [render_token(p or "", t) for p, t in zip(pieces, decoded)]
    # Partial UTF-8 sequences decode to U+FFFD; their byte form says more, so JSON gets it.
    raw = [t if "\ufffd" not in t else d.replace("␣", " ", 1) for t, d in zip(decoded, display)]
    trained = None
    if W_U is not None:
        from core.svd.undertrained import detect, reference_tokens

        ref = reference_tokens(tokenizer, d_vocab, texts=decoded[: len(ids)])
        if int(ref.sum()) >= 2:
            trained = detect(W_U, ref).trained
    src = norm_W_U if norm_W_U is not None else W_U
    norm = None if src is None else src.detach().float().norm(dim=0).cpu()
    return token_table_from_strings(raw, display, trained, norm)


def token_table_from_strings(
    raw: Sequence[str],
    display: Sequence[str],
    trained: Bool[Tensor, " d_vocab"] | None = None,
    norm: Float[Tensor, " d_vocab"] | None = None,
) -> TokenTable:
    """The table of :func:`token_table` from its two string lists, its ``trained`` mask
    and its ``norm`` values (as the cache keeps them): the other filter masks are
    computed from ``raw``.
    """
    if len(raw) != len(display):
        raise ValueError("raw and display must list the same tokens")
    ascii_ok = [t.isascii() and t.isprintable() and bool(t.strip()) for t in raw]
    alpha_ok = [(t[1:] if t.startswith(" ") else t).isalpha() for t in raw]
    return TokenTable(
        raw=tuple(raw),
        display=tuple(display),
        ascii=torch.tensor(ascii_ok, dtype=torch.bool),
        alpha=torch.tensor(alpha_ok, dtype=torch.bool),
        trained=trained,
        norm=norm,
    )
