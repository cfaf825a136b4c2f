"""Dataset examples of every direction: one pass of the model over the corpus, the
activations (:mod:`core.activations.readers`) of every direction of every kind, and
each direction's top and bottom ``N`` tokens, histogram and strongly active share
(:mod:`core.activations.running`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.activations.capture import hooks
from core.activations.corpus import Corpus, encode
from core.activations.readers import side_name, side_readers
from core.activations.running import HIST_SPAN, STRONG_SD, Running
from core.analysis import Analysis
from core.edit.hf import plain_model
from core.errors import SpecError
from core.model.families import family_of
from core.progress import Progress, quiet

#: Corpus tokens read by default: a few minutes for SmolLM2-135M on a 2-core CPU (BENCHMARKS.md).
DEFAULT_TOKENS = 5_000


@dataclass(frozen=True)
class ExampleOptions:
    """How examples are built.

    Attributes:
        tokens: corpus tokens to read (the token budget); documents are read in corpus
            order until it is spent.
        n: examples kept per end (top and bottom) of each direction.
        split: the corpus split read (``train``; ``heldout`` to check generalisation).
        context: longest window the model reads at once; a longer document is read in
            consecutive windows, each starting afresh (after the BOS token, if any).
        batch_tokens: tokens per forward pass (padding included).
        bins: histogram bins per direction.
    """

    tokens: int = DEFAULT_TOKENS
    n: int = 10
    split: str = "train"
    context: int = 128
    batch_tokens: int = 1024
    bins: int = 32

    def __post_init__(self) -> None:
        for name in ("tokens", "n", "context", "batch_tokens", "bins"):
            if getattr(self, name) < 1:
                raise SpecError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if self.batch_tokens < self.context:
            raise SpecError(
                f"batch_tokens ({self.batch_tokens}) must hold one window of context "
                f"({self.context}); raise it or lower the context."
            )

    def key(self, corpus: Corpus) -> dict[str, Any]:
        """What shapes the result: a stored build with another key is stale."""
        return {
            "corpus": corpus.digest,
            "split": self.split,
            "tokens": self.tokens,
            "n": self.n,
            "context": self.context,
            "bins": self.bins,
            "hist_span": HIST_SPAN,
            "strong_sd": STRONG_SD,
        }


@dataclass(frozen=True)
class SideExamples:
    """One side of one kind: ``n`` directions (component-major: row ``c * rank + i`` is
    direction ``i`` of component ``c``), ``k`` examples per end.

    Attributes:
        kind: matrix kind.
        side: side (:data:`core.activations.readers.SIDES`).
        components: ``(layer, head)`` per component.
        rank: directions per component.
        top_doc, top_pos, top_val: the ``k`` largest activations, descending: document id,
            token position in the document (0 is its first token), value.
        bottom_doc, bottom_pos, bottom_val: the ``k`` smallest, ascending.
        mean, std: over every token read.
        hist: counts per bin; bins ``j`` spans ``hist_lo + j * (hist_hi - hist_lo) / bins``
            onward; the end bins also count what falls outside.
        strong: share of tokens where the direction is strongly active
            (:mod:`core.activations.running`).
    """

    kind: str
    side: str
    components: tuple[tuple[int, int | None], ...]
    rank: int
    top_doc: Int[Tensor, "n k"]
    top_pos: Int[Tensor, "n k"]
    top_val: Float[Tensor, "n k"]
    bottom_doc: Int[Tensor, "n k"]
    bottom_pos: Int[Tensor, "n k"]
    bottom_val: Float[Tensor, "n k"]
    mean: Float[Tensor, " n"]
    std: Float[Tensor, " n"]
    hist: Int[Tensor, "n bins"]
    hist_lo: Float[Tensor, " n"]
    hist_hi: Float[Tensor, " n"]
    strong: Float[Tensor, " n"]

    def __post_init__(self) -> None:
        if self.top_val.shape[0] != len(self.components) * self.rank:
            raise ValueError("examples must hold rank rows per component")

    def row(self, layer: int, head: int | None, index: int) -> int:
        """The row of direction ``index`` of component ``(layer, head)``.

        Raises:
            KeyError: no such component or direction.
        """
        try:
            c = self.components.index((layer, head))
        except ValueError:
            raise KeyError((self.kind, layer, head)) from None
        if not 0 <= index < self.rank:
            raise KeyError((self.kind, layer, head, index))
        return c * self.rank + index


@dataclass(frozen=True)
class Examples:
    """Every side's examples from one build.

    Attributes:
        key: the build's :meth:`ExampleOptions.key`.
        n_tokens: corpus tokens read (BOS tokens not counted).
        sides: by ``<kind>.<side>``.
        context: the longest window read (``options.context``, less where the model's
            context is shorter).
        seconds: how long the build took (0 when read from the cache).
    """

    key: dict[str, Any]
    n_tokens: int
    sides: dict[str, SideExamples]
    context: int
    seconds: float = 0.0


def windows(
    corpus: Corpus, tokenizer: Any, options: ExampleOptions, context: int
) -> Iterator[tuple[int, int, list[int]]]:
    """``(document id, first position, token ids)`` of each window of at most ``context``
    tokens read, in order, until the token budget is spent (the last window is cut to fit).
    """
    left = options.tokens
    for doc in corpus.split(options.split):
        ids = encode(tokenizer, doc.text)
        for start in range(0, len(ids), context):
            w = ids[start : start + context][:left]
            if w:
                yield doc.id, start, w
                left -= len(w)
            if left <= 0:
                return


def _batches(
    corpus: Corpus, tokenizer: Any, options: ExampleOptions, context: int, bos: int | None
) -> Iterator[list[tuple[int, int, list[int]]]]:
    """Windows grouped so that each padded batch holds at most ``batch_tokens`` tokens."""
    lead = 0 if bos is None else 1
    batch: list[tuple[int, int, list[int]]] = []
    longest = 0
    for w in windows(corpus, tokenizer, options, context):
        size = max(longest, len(w[2]) + lead)
        if batch and (len(batch) + 1) * size > options.batch_tokens:
            yield batch
            batch, size = [], len(w[2]) + lead
        batch.append(w)
        longest = size
    if batch:
        yield batch


def build_examples(
    analysis: Analysis,
    corpus: Corpus,
    options: ExampleOptions = ExampleOptions(),
    progress: Progress = quiet,
) -> Examples:
    """Read ``options.tokens`` tokens of ``corpus`` with the analysis's model (one pass,
    on the settings' device) and keep every direction's examples and statistics.

    Activations are defined in :mod:`core.activations.readers`. Each window starts with
    the tokenizer's BOS token when it has one; the BOS position itself is not counted.
    """
    t0 = time.perf_counter()
    model_info = analysis.model
    if model_info is None:
        raise SpecError("Dataset examples need the model; open the analysis with open_analysis.")
    device = analysis.settings.torch_device()
    tokenizer = model_info.tokenizer
    bos = getattr(tokenizer, "bos_token_id", None)
    progress(0.0, "examples: preparing the directions")
    readers = side_readers(analysis, device)
    model = plain_model(analysis).to(device)
    meta = analysis.meta
    lead = 0 if bos is None else 1
    context = min(options.context, family_of(model).n_ctx(model.config) - lead)
    running = {
        side_name(r.kind, r.side): Running(r.n, options.n, options.bins, device) for r in readers
    }
    docs: list[Tensor] = []
    poss: list[Tensor] = []
    seen = 0
    centre = meta.normalization == "LN"
    base = model.base_model
    with (
        torch.no_grad(),
        hooks(model, meta.n_layers, analysis.settings.processing, centre) as (
            cap,
            mask,
        ),
    ):
        for batch in _batches(corpus, tokenizer, options, context, bos):
            width = lead + max(len(w) for _, _, w in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            attn = torch.zeros(len(batch), width, dtype=torch.long)
            keep = torch.zeros(len(batch), width, dtype=torch.bool)
            for b, (doc, start, w) in enumerate(batch):
                if bos is not None:
                    ids[b, 0] = bos
                ids[b, lead : lead + len(w)] = torch.tensor(w)
                attn[b, : lead + len(w)] = 1
                keep[b, lead : lead + len(w)] = True
                docs.append(torch.full((len(w),), doc, dtype=torch.int32))
                poss.append(torch.arange(start, start + len(w), dtype=torch.int32))
            mask[0] = keep
            base(input_ids=ids.to(device), attention_mask=attn.to(device))
            for r in readers:
                running[side_name(r.kind, r.side)].update(r(cap), seen)
            seen += int(keep.sum())
            progress(min(1.0, seen / options.tokens), f"examples: {seen:,} tokens read")
    if seen == 0:
        raise SpecError(
            f"The {options.split} split of the corpus {corpus.name} has no text; "
            "use another split or corpus."
        )
    doc_of = torch.cat(docs)
    pos_of = torch.cat(poss)
    sides = {name: _side(r, running[name], doc_of, pos_of) for r, name in zip(readers, running)}
    return Examples(options.key(corpus), seen, sides, context, time.perf_counter() - t0)


def _side(reader: Any, run: Running, doc_of: Tensor, pos_of: Tensor) -> SideExamples:
    mean, std = run.mean_std()
    assert run.lo is not None and run.width is not None
    top_idx, bot_idx = run.top_idx.T.cpu(), run.bot_idx.T.cpu()
    return SideExamples(
        kind=reader.kind,
        side=reader.side,
        components=reader.components,
        rank=reader.rank,
        top_doc=doc_of[top_idx],
        top_pos=pos_of[top_idx],
        top_val=run.top_val.T.contiguous().cpu(),
        bottom_doc=doc_of[bot_idx],
        bottom_pos=pos_of[bot_idx],
        bottom_val=run.bot_val.T.contiguous().cpu(),
        mean=mean.cpu(),
        std=std.cpu(),
        hist=run.hist.cpu(),
        hist_lo=run.lo.cpu(),
        hist_hi=(run.lo + run.width * run.bins).cpu(),
        strong=(run.strong.double() / max(1, run.count)).float().cpu(),
    )
