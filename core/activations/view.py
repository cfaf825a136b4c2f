"""One direction's examples as readable contexts, for the CLI and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.activations.corpus import Corpus, encode
from core.activations.examples import Examples
from core.activations.readers import resolve_side, side_name
from core.errors import SpecError


@dataclass(frozen=True)
class Example:
    """One activating token in its context.

    Attributes:
        doc: document id.
        source: the document's source.
        pos: the token's position in the document.
        value: the activation there.
        tokens: the context's token strings; ``tokens[at]`` is the activating token.
        at: index of the activating token in ``tokens``.
    """

    doc: int
    source: str
    pos: int
    value: float
    tokens: tuple[str, ...]
    at: int

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form, with the context as text and the token marked ``[[...]]``."""
        marked = "".join(f"[[{t}]]" if i == self.at else t for i, t in enumerate(self.tokens))
        return {
            "doc": self.doc,
            "source": self.source,
            "pos": self.pos,
            "value": round(self.value, 6),
            "token": self.tokens[self.at],
            "context": marked,
        }


@dataclass(frozen=True)
class DirectionExamples:
    """A direction's examples and activation statistics.

    Attributes:
        kind, side, layer, head, index: which direction.
        top: the largest activations, descending.
        bottom: the smallest, ascending.
        mean, std: over the corpus tokens read.
        hist: counts per bin between ``hist_lo`` and ``hist_hi`` (end bins catch the rest).
        strong: share of tokens where it is strongly active (:mod:`core.activations.running`).
        n_tokens: corpus tokens read.
    """

    kind: str
    side: str
    layer: int
    head: int | None
    index: int
    top: tuple[Example, ...]
    bottom: tuple[Example, ...]
    mean: float
    std: float
    hist: tuple[int, ...]
    hist_lo: float
    hist_hi: float
    strong: float
    n_tokens: int

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "kind": self.kind,
            "side": self.side,
            "layer": self.layer,
            "head": self.head,
            "index": self.index,
            "n_tokens": self.n_tokens,
            "mean": self.mean,
            "std": self.std,
            "strong_share": self.strong,
            "histogram": {"lo": self.hist_lo, "hi": self.hist_hi, "counts": list(self.hist)},
            "top": [e.to_json() for e in self.top],
            "bottom": [e.to_json() for e in self.bottom],
        }


def direction_examples(
    examples: Examples,
    corpus: Corpus,
    tokenizer: Any,
    token_strings: tuple[str, ...],
    kind: str,
    layer: int,
    head: int | None,
    index: int,
    side: str | None = None,
    n: int = 10,
    before: int = 12,
    after: int = 4,
) -> DirectionExamples:
    """The ``n`` top and bottom examples of one direction, each with ``before`` tokens of
    context before the activating token and ``after`` after it (within its document).

    ``token_strings`` are the decoded strings of every token id (``TokenTable.raw``).

    Raises:
        SpecError: no such side, component or direction in ``examples``.
    """
    try:
        side = resolve_side(kind, side)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    e = examples.sides.get(side_name(kind, side))
    if e is None:
        raise SpecError(f"The examples hold no {kind} {side} side; build them for this model.")
    try:
        row = e.row(layer, head, index)
    except KeyError:
        raise SpecError(
            f"{kind} has no direction {index} at layer {layer}"
            + ("" if head is None else f" head {head}")
            + f"; use a layer, head and an index below {e.rank}."
        ) from None
    docs = corpus.by_id()
    window = examples.context
    cache: dict[int, list[int]] = {}

    def make(doc: int, pos: int, value: float) -> Example:
        if doc not in cache:
            cache[doc] = encode(tokenizer, docs[doc].text) if doc in docs else []
        ids = cache[doc]
        if not 0 <= pos < len(ids):
            raise SpecError("The examples do not match this corpus or tokenizer; build them again.")
        # The model read the document in windows of ``context`` tokens: show no token
        # before the window the activating one was read in.
        lo = max(pos - pos % window, pos - before)
        toks = tuple(
            token_strings[i] if 0 <= i < len(token_strings) else "?"
            for i in ids[lo : pos + after + 1]
        )
        return Example(doc, docs[doc].source, pos, value, toks, pos - lo)

    m = min(n, e.top_val.shape[1])
    top = tuple(
        make(int(e.top_doc[row, j]), int(e.top_pos[row, j]), float(e.top_val[row, j]))
        for j in range(m)
    )
    bottom = tuple(
        make(int(e.bottom_doc[row, j]), int(e.bottom_pos[row, j]), float(e.bottom_val[row, j]))
        for j in range(m)
    )
    return DirectionExamples(
        kind=kind,
        side=side,
        layer=layer,
        head=head,
        index=index,
        top=top,
        bottom=bottom,
        mean=float(e.mean[row]),
        std=float(e.std[row]),
        hist=tuple(int(x) for x in e.hist[row]),
        hist_lo=float(e.hist_lo[row]),
        hist_hi=float(e.hist_hi[row]),
        strong=float(e.strong[row]),
        n_tokens=examples.n_tokens,
    )
