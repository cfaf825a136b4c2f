"""The search index: every singular direction of a model, stacked and normalised.

Built once per :class:`~core.analysis.Analysis` (the dashboard caches it with
``st.cache_resource``); queries (:mod:`core.search.engine`) read it and never change it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.cache.store import KindResult
from core.errors import SpecError
from core.search import stored
from core.search.embed import DEFAULT_RIDGE, QueryEmbedder, build_embedder
from core.search.memo import MemoTokenizer, memo_tokenizer
from core.search.parts import PartStore
from core.search.product import index_product
from core.search.score import TOP_TOKENS, logit_std, top_z
from core.settings import MATRIX_KINDS
from core.svd.project import TokenTable

#: Kinds searched when none are named: the ones that write to or read from tokens'
#: meaning (QK and the embedding are opt-in).
DEFAULT_KINDS: tuple[str, ...] = ("ov", "mlp_in", "mlp_gate", "mlp_out")


@dataclass(frozen=True)
class SearchIndex:
    """Every direction of a model, unit-normalised and stacked, with an index table.

    Rows of one kind are contiguous: ``spans[kind] = (start, stop)``. Within a kind rows
    are component-major, ``row = start + c * rank + i`` for component ``c``, direction
    ``i``.

    Attributes:
        vectors: unit token-side singular vectors ``[n, d_model]``, bfloat16 by default:
            a query reads the whole matrix, so half precision halves its latency (and
            CPUs multiply bfloat16 by a few columns at once much faster than float16); hits
            are re-scored exactly from the float32 decomposition.
        kind_of: position of each row's kind in ``kinds`` ``[n]``.
        layer: ``[n]``.
        head: ``[n]``, ``-1`` for MLP and embedding rows.
        index: the direction's index within its component ``[n]``.
        component: the component's row in its kind's decomposition ``[n]``.
        singular_value: ``[n]``.
        degenerate: ``[n]``.
        logit_std: standard deviation over the vocabulary of each row's logits ``[n]``.
        tau_top: z-score of each row's ``TOP_TOKENS``-th highest logit ``[n]``.
        tau_bottom: minus the z-score of its ``TOP_TOKENS``-th lowest logit ``[n]``.
        kinds: the kinds held, in row order.
        spans: ``kind -> (start, stop)``.
        results: each kind's cached result (for top tokens), looked up when first used.
        tokens: the model's token table.
        embedder: the query embedder (``W_U``-side operators).
        tokenizer: the model's tokenizer, or ``None`` (exact vocabulary lookup).
        store: where derived parts (significance nulls) are cached, or ``None``.
        nulls: the nulls computed so far (:func:`core.search.null.null_for`'s memo).
        memo: what the nulls share, computed on first use (the random queries' word
            pool, :func:`core.search.null.index_pool`, and one lock per null shape, so a
            query and the background warm-up compute a shape once; the dashboard also
            keeps its :class:`core.search.warm.NullWarmer` here). This and ``nulls``
            are the only things about an index that change after it is built.
    """

    vectors: Float[Tensor, "n d_model"]
    kind_of: Int[Tensor, " n"]
    layer: Int[Tensor, " n"]
    head: Int[Tensor, " n"]
    index: Int[Tensor, " n"]
    component: Int[Tensor, " n"]
    singular_value: Float[Tensor, " n"]
    degenerate: Bool[Tensor, " n"]
    logit_std: Float[Tensor, " n"]
    tau_top: Float[Tensor, " n"]
    tau_bottom: Float[Tensor, " n"]
    kinds: tuple[str, ...]
    spans: dict[str, tuple[int, int]]
    # A view, not a subscripted Mapping: a runtime type checker (the tests' beartype)
    # would sample an item, reading a kind's file that no query asked for.
    results: stored.KindsView
    tokens: TokenTable
    embedder: QueryEmbedder
    tokenizer: Any = None
    store: PartStore | None = None
    nulls: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n, d = self.vectors.shape
        if not self.vectors.is_floating_point():
            raise ValueError("vectors must be floating point")
        names = (
            "kind_of",
            "layer",
            "head",
            "index",
            "component",
            "singular_value",
            "logit_std",
            "tau_top",
            "tau_bottom",
        )
        for name in names:
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if self.degenerate.shape != (n,):
            raise ValueError(f"degenerate must have shape ({n},)")
        if self.embedder.W_U.shape[0] != d:
            raise ValueError("embedder and vectors disagree on d_model")

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def word_zipf(self) -> Callable[[str], float | None] | None:
        """A held word's English Zipf frequency where the tokenizer is the query-word
        memo (:meth:`core.search.memo.MemoTokenizer.zipf`: no word list to read), else
        ``None`` (the null's frequency bins then read wordfreq's).
        """
        return self.tokenizer.zipf if isinstance(self.tokenizer, MemoTokenizer) else None

    @property
    def d_model(self) -> int:
        """Residual width."""
        return int(self.vectors.shape[1])

    def row(self, kind: str, layer: int, head: int | None, index: int) -> int:
        """The row of one direction; ``KeyError`` when the index does not hold it."""
        if kind not in self.spans:
            raise KeyError(kind)
        res = self.results[kind]
        c = res.decomposition.index(layer, head)
        r = res.decomposition.rank
        if not 0 <= index < r:
            raise KeyError((kind, layer, head, index))
        return self.spans[kind][0] + c * r + index

    def rows_for(self, kinds: Sequence[str]) -> Int[Tensor, " m"]:
        """Row numbers of the given kinds (those held), in index order."""
        parts = [torch.arange(*self.spans[k]) for k in self.kinds if k in kinds]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _kth_logits(res: KindResult, C: int, r: int) -> Float[Tensor, "n 2"]:
    """Each direction's ``TOP_TOKENS``-th highest and lowest logit (NaN where the cache
    does not hold them), rows component-major.
    """
    out = torch.full((C, r, 2), float("nan"))
    n = res.n_projected
    if res.tops.top_val.shape[1] >= TOP_TOKENS and n > 0:
        out[:, :n, 0] = res.tops.top_val[:, TOP_TOKENS - 1].reshape(C, n).float()
        out[:, :n, 1] = res.tops.bottom_val[:, TOP_TOKENS - 1].reshape(C, n).float()
    return out.reshape(C * r, 2)


def _stats(
    analysis: Any,
    kinds: Sequence[str],
    kth: Float[Tensor, "n 2"],
    ridge: float,
    dtype: torch.dtype,
) -> tuple[QueryEmbedder, dict[str, Tensor]]:
    """The query operators, and each row's logit std, its thresholds
    ``tau_top``/``tau_bottom`` and the rows themselves (``[n, d_model]`` in ``dtype``).
    """
    embedder = build_embedder(analysis.W_U, analysis.W_E, ridge, analysis.settings.vocab_chunk)
    # From float32 vectors: the stored stack is in the index's (lower) precision.
    held = analysis.svd.kinds
    vec = torch.cat(
        [
            held[k].decomposition.directions.permute(0, 2, 1).reshape(-1, analysis.meta.d_model)
            for k in kinds
        ]
    ).float()
    vec = vec / vec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    std = logit_std(vec, embedder.gc_root, embedder.d_vocab)
    mean = vec @ embedder.mean_u.float()
    # The z a logit needs to be among a direction's top (bottom) TOP_TOKENS tokens: from
    # the cached projections where they reach that far, else the Gaussian value.
    gauss = top_z(embedder.d_vocab)
    tau_top = ((kth[:, 0] - mean) / std).nan_to_num(gauss)
    tau_bottom = ((mean - kth[:, 1]) / std).nan_to_num(gauss)
    stats = {"logit_std": std, "tau_top": tau_top, "tau_bottom": tau_bottom}
    return embedder, {**stats, "vectors": vec.to(dtype)}


def _row_table(
    held: Any, kinds: Sequence[str]
) -> tuple[dict[str, Tensor], dict[str, tuple[int, int]], Float[Tensor, "n 2"]]:
    """The row table (:data:`core.search.stored.ROWS`), each kind's span, and each row's
    ``TOP_TOKENS``-th highest and lowest cached logit.
    """
    parts: dict[str, list[Tensor]] = {n: [] for n in (*stored.ROWS, "kth")}
    spans: dict[str, tuple[int, int]] = {}
    start = 0
    for ki, kind in enumerate(kinds):
        d = held[kind].decomposition
        C, _, r = d.directions.shape
        layers = torch.tensor([lay for lay, _ in d.components], dtype=torch.long)
        heads = torch.tensor([-1 if h is None else h for _, h in d.components], dtype=torch.long)
        parts["kind_of"].append(torch.full((C * r,), ki, dtype=torch.long))
        parts["layer"].append(layers.repeat_interleave(r))
        parts["head"].append(heads.repeat_interleave(r))
        parts["index"].append(torch.arange(r).repeat(C))
        parts["component"].append(torch.arange(C).repeat_interleave(r))
        parts["singular_value"].append(d.S.reshape(-1).float())
        parts["degenerate"].append(d.degenerate.reshape(-1))
        parts["kth"].append(_kth_logits(held[kind], C, r))
        spans[kind] = (start, start + C * r)
        start += C * r
    cat = {k: torch.cat(v) for k, v in parts.items()}
    kth = cat.pop("kth")
    return cat, spans, kth


def build_index(
    analysis: Any,
    kinds: Sequence[str] | None = None,
    tokenizer: Any = None,
    ridge: float = DEFAULT_RIDGE,
    dtype: torch.dtype = torch.bfloat16,
) -> SearchIndex:
    """Stack and normalise every direction of ``kinds`` (default: all the cache holds).

    ``tokenizer`` defaults to the analysis's (read from the checkpoint's tokenizer.json
    when the analysis came from the cache alone: no model load). Memory: ``2 n d_model`` bytes in
    bfloat16 for ``n`` directions (GPT-2 medium, OV + MLP in/out: about 150 MB).

    A settled entry keeps what this computes as a part (:mod:`core.search.stored`): a
    later build reads it instead, and reads no kind's file.
    """
    held = analysis.svd.kinds
    wanted = tuple(kinds) if kinds is not None else MATRIX_KINDS
    kinds = tuple(k for k in MATRIX_KINDS if k in held and k in wanted)
    if not kinds:
        raise SpecError(
            f"{wanted[0] if wanted else 'That'} is not searchable for this model (it lacks it "
            f"or the cache does not hold it); use some of {', '.join(k for k in held)}."
        )
    tables = stored.load(analysis, kinds, ridge, dtype)
    if tables is None:
        rows, spans, kth = _row_table(held, kinds)
        embedder, stats = _stats(analysis, kinds, kth, ridge, dtype)
        tables = stored.IndexTables(rows, stats, spans, embedder)
        stored.save(analysis, kinds, ridge, dtype, tables)
    rows, stats = tables.rows, tables.stats
    if tokenizer is None:
        # A cache-only process reads its queries' words from the entry's memo, not by
        # parsing the tokenizer (same ids: core.search.memo).
        one = stored.one_question(analysis)
        tokenizer = memo_tokenizer(analysis, one) if one else analysis.tokenizer
    return SearchIndex(
        vectors=stats["vectors"],
        kind_of=rows["kind_of"],
        layer=rows["layer"],
        head=rows["head"],
        index=rows["index"],
        component=rows["component"],
        singular_value=rows["singular_value"],
        degenerate=rows["degenerate"],
        logit_std=stats["logit_std"],
        tau_top=stats["tau_top"],
        tau_bottom=stats["tau_bottom"],
        kinds=kinds,
        spans=tables.spans,
        results=stored.KindsView(held, kinds),
        tokens=analysis.tokens,
        embedder=tables.embedder,
        tokenizer=tokenizer,
        store=stored.part_store(analysis, kinds, ridge, dtype),
    )


def check_kinds(index: SearchIndex, kinds: Sequence[str]) -> tuple[str, ...]:
    """Validate a kind filter against the index; returns it in index order."""
    if not kinds:
        raise SpecError(f"Name at least one matrix kind, e.g. {','.join(DEFAULT_KINDS[:3])}.")
    for k in kinds:
        if k not in MATRIX_KINDS:
            raise SpecError(f"Unknown matrix {k!r}; use some of {', '.join(MATRIX_KINDS)}.")
        if k not in index.spans:
            raise SpecError(
                f"{k} is not searchable for this model (it lacks it or the cache does not "
                f"hold it); use some of {', '.join(index.kinds)}."
            )
    return tuple(k for k in index.kinds if k in kinds)


def default_kinds(index: SearchIndex) -> tuple[str, ...]:
    """``DEFAULT_KINDS`` that the index holds."""
    return tuple(k for k in DEFAULT_KINDS if k in index.spans)


def similarities(
    index: SearchIndex, q: Float[Tensor, " d_model"], kinds: Sequence[str]
) -> tuple[Float[Tensor, " m"], Int[Tensor, " m"]]:
    """Approximate cosines (index precision) of unit ``q`` with every direction of
    ``kinds``, and their row numbers.
    """
    sims, rows = [], []
    for k in index.kinds:
        if k in kinds:
            a, b = index.spans[k]
            sims.append(index_product(index.vectors[a:b], q[:, None])[0])
            rows.append(torch.arange(a, b))
    return torch.cat(sims), torch.cat(rows)


def exact_vectors(index: SearchIndex, rows: Int[Tensor, " m"]) -> Float[Tensor, "m d_model"]:
    """Float32 unit vectors of index rows, read from the decompositions."""
    out = torch.empty(len(rows), index.d_model)
    kind_of = index.kind_of[rows]
    for ki, kind in enumerate(index.kinds):
        sel = (kind_of == ki).nonzero()[:, 0]
        if len(sel):
            r = rows[sel]
            dirs = index.results[kind].decomposition.directions
            out[sel] = dirs[index.component[r], :, index.index[r]].float()
    return out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)
