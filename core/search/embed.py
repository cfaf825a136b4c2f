"""Query embedding for semantic search: words -> token weights -> a residual-stream vector.

A query is concepts separated by commas, colons or semicolons (``"fire, flames"``;
``"colours: red, blue"`` is three concepts). Each concept is tokenized with and without a
leading space (GPT-2-style tokenizers give ``"fire"`` and ``" fire"`` different ids).

A concept is *known* when one of its spellings is a single token of the model, or when it
is made of English words (:func:`core.words.dictionary_words`, about 22,000 words) and so
is matched as a whole: a word of several tokens is represented by all the tokens of its
shortest spellings, as one unit (``"flames"`` on GPT-2-style vocabularies is
``fl``+``ames``, never ``fl`` alone). A concept that is neither (``"qqqzzzxxyy"``) is
refused: its pieces are fragments shared with unrelated words. Every concept gets the
same total weight, split evenly over its spellings and then over each spelling's tokens.

The token weights ``t`` (a sparse vector over the vocabulary) are then mapped into the
residual stream by one of these methods:

* ``embed``: ``t @ W_E``, the embedding rows (the post found this too lossy).
* ``pinv``: ``t @ pinv(W_U)``, the least-squares residual vector whose logits best match
  the indicator ``t`` (the post's method). Computed as ``(W_U t) G^+`` with
  ``G = W_U W_U^T`` so the ``d_vocab x d_model`` pseudoinverse is never formed.
* ``ridge``: ``(W_Uc t) (G_c + lam I)^-1`` where ``W_Uc`` is ``W_U`` centred over the
  vocabulary and ``lam`` a fraction of ``G_c``'s mean eigenvalue. Logits are only
  defined up to a constant (softmax), so the centred fit spends nothing on the mean
  logit; the ridge term stops the fit from amplifying the indicator's noise along the
  directions where ``W_U`` is weak (``1/s`` for small singular values ``s``).
* ``token`` (the default): ranks directions in token space (``core.search.engine``): each
  direction's logits are standardised and the query's tokens scored against them; its
  reported cosine is the ``ridge`` vector's.

Every linear method is ``d_model x d_model`` operator precomputed once per model (one
eigendecomposition of ``G``, one of ``G_c``); embedding a query then costs a gather of a
few ``W_U`` columns and one small matrix-vector product. The self-retrieval benchmark
(``core.search.retrieval``) compares the methods.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.errors import SpecError
from core.svd.gram import sym_eigh
from core.words import known_words

#: Query methods, default first.
METHODS: tuple[str, ...] = ("token", "ridge", "pinv", "embed")
DEFAULT_METHOD = "token"
#: The residual vector each method's cosine is measured with.
VECTOR_OF: dict[str, str] = {"token": "ridge", "ridge": "ridge", "pinv": "pinv", "embed": "embed"}
#: Ridge strength as a fraction of the mean eigenvalue of the centred ``W_U W_U^T``.
DEFAULT_RIDGE = 1.0
#: Eigenvalues of ``W_U W_U^T`` below this fraction of the largest count as zero for
#: ``pinv`` (singular values below 1e-5 of the largest). ``post`` processing centres
#: ``W_U`` over ``d_model``, leaving a null direction that float32 rounding makes tiny
#: but not zero; inverting it would swamp the result.
PINV_RCOND = 1e-10


@dataclass(frozen=True)
class QueryTokens:
    """A parsed query: the concepts, and the token ids with their weights.

    Attributes:
        text: the query as given.
        concepts: the non-empty comma-separated parts, stripped.
        concept_tokens: per concept, the token strings it was mapped to.
        ids: token ids ``[m]``, concept by concept (an id may recur in two concepts).
        weights: their weights ``[m]`` (each concept sums to 1).
        groups: the concept each id belongs to ``[m]``.
        spellings: per concept, the tokenisation (token strings) of each spelling it is
            represented by; a spelling of several tokens is matched by all of them.
        pieces: the spelling each id belongs to ``[m]`` (numbered across the query; ids
            of one spelling are consecutive); ``None``: every id is its own spelling.
    """

    text: str
    concepts: tuple[str, ...]
    concept_tokens: tuple[tuple[str, ...], ...]
    ids: Int[Tensor, " m"]
    weights: Float[Tensor, " m"]
    groups: Int[Tensor, " m"]
    spellings: tuple[tuple[tuple[str, ...], ...], ...] = ()
    pieces: Int[Tensor, " m"] | None = None

    def __post_init__(self) -> None:
        if self.ids.ndim != 1 or not self.ids.shape == self.weights.shape == self.groups.shape:
            raise ValueError("ids, weights and groups must be 1-d tensors of one length")
        if self.pieces is not None and self.pieces.shape != self.ids.shape:
            raise ValueError("pieces must have the shape of ids")

    @property
    def spelling_of(self) -> Int[Tensor, " m"]:
        """The spelling of each id ``[m]`` (``0 .. n_spellings-1``)."""
        return torch.arange(len(self.ids)) if self.pieces is None else self.pieces

    @property
    def spelling_groups(self) -> Int[Tensor, " s"]:
        """The concept of each spelling ``[s]``."""
        sp = self.spelling_of
        out = torch.zeros(int(sp.max()) + 1 if len(sp) else 0, dtype=torch.long)
        out[sp] = self.groups
        return out

    def describe(self) -> str:
        """``fire -> 'fire', ' fire'; flames -> 'fl'+'ames', ' fl'+'ames'`` for display:
        each spelling with all the tokens it is matched by.
        """
        parts = []
        for i, (c, toks) in enumerate(zip(self.concepts, self.concept_tokens)):
            sp = self.spellings[i] if i < len(self.spellings) else tuple((t,) for t in toks)
            parts.append(f"{c} -> {', '.join('+'.join(repr(p) for p in s) for s in sp)}")
        return "; ".join(parts)


#: What separates the concepts of a query: ``"label: a, b"`` is three concepts.
SEPARATORS = re.compile(r"[,:;]")


def split_concepts(query: str) -> tuple[str, ...]:
    """The non-empty, stripped parts of ``query`` between commas, colons and semicolons."""
    return tuple(p.strip() for p in SEPARATORS.split(query) if p.strip())


def is_word(concept: str, words: frozenset[str]) -> bool:
    """Whether ``concept`` is English words only (each in ``words``, case-insensitive)."""
    parts = concept.lower().split()
    return bool(parts) and all(p.isalpha() and p in words for p in parts)


def _encode(tokenizer: Any, text: str, vocab: Sequence[str]) -> list[int] | None:
    """Token ids of ``text``, or ``None`` when the tokenizer has no tokens for it."""
    if tokenizer is None:
        # No tokenizer (bare weights): exact match against the decoded vocabulary.
        try:
            return [vocab.index(text)]
        except ValueError:
            return None
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if not ids:
        return None
    unk = getattr(tokenizer, "unk_token_id", None)
    unk_text = getattr(tokenizer, "unk_token", None)
    if unk is not None and unk in ids and text.strip() != unk_text:
        return None
    return ids


def parse_query(
    query: str,
    tokenizer: Any,
    vocab: Sequence[str],
    d_vocab: int,
    words: frozenset[str] | None = None,
) -> QueryTokens:
    """Tokenize ``query`` into weighted token ids (see the module docstring for which
    concepts are known).

    ``vocab`` is the decoded string of each id (``TokenTable.raw``), used for display and,
    when ``tokenizer`` is ``None``, for lookup (then only single tokens are known).
    ``words`` is the word list of multi-token concepts (default
    :func:`core.words.known_words`).

    Raises:
        SpecError: the query is empty, or a concept is no known word of this model.
    """
    concepts = split_concepts(query)
    if not concepts:
        raise SpecError(
            'The query is empty; give one or more comma-separated words, e.g. "fire, flames".'
        )
    words = known_words() if words is None else words
    ids: list[int] = []
    weights: list[float] = []
    groups: list[int] = []
    pieces: list[int] = []
    concept_tokens: list[tuple[str, ...]] = []
    spellings: list[tuple[tuple[str, ...], ...]] = []

    def show(i: int) -> str:
        return vocab[i] if i < len(vocab) else str(i)

    for g, concept in enumerate(concepts):
        variants: list[list[int]] = []
        for text in (concept, " " + concept):
            enc = _encode(tokenizer, text, vocab)
            if enc is not None and all(0 <= i < d_vocab for i in enc) and enc not in variants:
                variants.append(enc)
        shortest = min((len(v) for v in variants), default=0)
        if not variants or (shortest > 1 and not is_word(concept, words)):
            raise SpecError(
                f"{concept!r} is not a known word for this model (not one of its tokens, nor "
                "an English word matched by all its tokens); try another spelling or word."
            )
        kept = [v for v in variants if len(v) == shortest]
        for v in kept:
            ids += v
            weights += [1.0 / (len(kept) * len(v))] * len(v)
            groups += [g] * len(v)
            pieces += [pieces[-1] + 1 if pieces else 0] * len(v)
        concept_tokens.append(tuple(show(i) for v in kept for i in v))
        spellings.append(tuple(tuple(show(i) for i in v) for v in kept))
    return QueryTokens(
        text=query,
        concepts=concepts,
        concept_tokens=tuple(concept_tokens),
        ids=torch.tensor(ids, dtype=torch.long),
        weights=torch.tensor(weights, dtype=torch.float32),
        groups=torch.tensor(groups, dtype=torch.long),
        spellings=tuple(spellings),
        pieces=torch.tensor(pieces, dtype=torch.long),
    )


def check_method(method: str) -> None:
    """Raise :class:`SpecError` unless ``method`` is a known embedding method."""
    if method not in METHODS:
        raise SpecError(f"Unknown embedding {method!r}; use one of {', '.join(METHODS)}.")


@dataclass(frozen=True)
class QueryEmbedder:
    """Maps token weights to residual-stream vectors; built once per model.

    Attributes:
        W_U: the unembedding the directions were projected with ``[d_model, d_vocab]``
            (shared with the analysis, not copied).
        W_E: the embedding ``[d_vocab, d_model]``.
        mean_u: ``W_U``'s mean column ``[d_model]``.
        pinv_op: ``G^+`` with ``G = W_U W_U^T`` ``[d_model, d_model]``.
        ridge_op: ``(G_c + lam I)^-1`` for the centred ``G_c`` ``[d_model, d_model]``.
        gc_root: ``R`` with ``R R^T = G_c`` ``[d_model, d_model]``: ``|v R|^2 / d_vocab``
            is the variance over the vocabulary of direction ``v``'s logits.
        ridge: ``lam`` as a fraction of ``G_c``'s mean eigenvalue.
    """

    W_U: Float[Tensor, "d_model d_vocab"]
    W_E: Float[Tensor, "d_vocab d_model"]
    mean_u: Float[Tensor, " d_model"]
    pinv_op: Float[Tensor, "d_model d_model"]
    ridge_op: Float[Tensor, "d_model d_model"]
    gc_root: Float[Tensor, "d_model d_model"]
    ridge: float = DEFAULT_RIDGE

    def __post_init__(self) -> None:
        d, V = self.W_U.shape
        if self.W_E.shape != (V, d):
            raise ValueError(f"W_E has shape {tuple(self.W_E.shape)}, expected {(V, d)}")
        for name in ("pinv_op", "ridge_op", "gc_root"):
            if getattr(self, name).shape != (d, d):
                raise ValueError(f"{name} must be [d_model, d_model]")
        if self.mean_u.shape != (d,):
            raise ValueError("mean_u must be [d_model]")

    @property
    def d_vocab(self) -> int:
        """Vocabulary size."""
        return int(self.W_U.shape[1])

    def embed(
        self,
        ids: Int[Tensor, "b m"] | Int[Tensor, " m"],
        weights: Float[Tensor, "b m"] | Float[Tensor, " m"],
        method: str = DEFAULT_METHOD,
    ) -> Float[Tensor, "b d_model"]:
        """Residual vectors for a batch of sparse token-weight vectors (not normalised).

        ``ids``/``weights`` are ``[m]`` (one query) or ``[b, m]`` (a batch of queries with
        ``m`` tokens each; pad with weight 0). Returns ``[b, d_model]`` (``b = 1`` for one).
        """
        check_method(method)
        method = VECTOR_OF[method]
        if ids.ndim == 1:
            ids, weights = ids[None], weights[None]
        w = weights.to(self.W_E.dtype)
        if method == "embed":
            return torch.einsum("bm,bmd->bd", w, self.W_E[ids])
        cols = self.W_U.T[ids]  # [b, m, d]
        s = torch.einsum("bm,bmd->bd", w, cols)  # W_U t
        if method == "pinv":
            return s @ self.pinv_op
        # Centred: (W_U - mean 1^T)(t - mean(t)) = W_U t - sum(t) mean_u  (the centred
        # columns sum to zero, so centring t as well changes nothing).
        s = s - w.sum(dim=1, keepdim=True) * self.mean_u
        return s @ self.ridge_op

    def centred_columns(self, ids: Int[Tensor, "*b m"]) -> Float[Tensor, "*b d_model m"]:
        """``W_U``'s columns for ``ids`` minus the mean column: ``v @ cols`` are the
        logits of ``v`` for those tokens relative to its mean logit.
        """
        return (self.W_U.T[ids] - self.mean_u).transpose(-1, -2)


def _sym_inverse(
    evals: Tensor, evecs: Tensor, shift: float, rcond: float | None
) -> Float[Tensor, "d d"]:
    e = evals + shift
    if rcond is not None:
        keep = e > rcond * e.max()
        inv = torch.where(keep, 1.0 / e.clamp_min(torch.finfo(e.dtype).tiny), 0.0)
    else:
        inv = 1.0 / e
    return (evecs * inv) @ evecs.T


def build_embedder(
    W_U: Float[Tensor, "d_model d_vocab"],
    W_E: Float[Tensor, "d_vocab d_model"],
    ridge: float = DEFAULT_RIDGE,
    chunk: int = 16384,
) -> QueryEmbedder:
    """Precompute every method's ``d_model x d_model`` operator.

    Costs one pass over ``W_U`` (``d_model^2 d_vocab`` flops, in float64 for accuracy)
    and two ``d_model x d_model`` eigendecompositions.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be non-negative, not {ridge}")
    d, V = W_U.shape
    G = torch.zeros(d, d, dtype=torch.float64)
    total = torch.zeros(d, dtype=torch.float64)
    for start in range(0, V, chunk):
        block = W_U[:, start : start + chunk].to(torch.float64)
        G += block @ block.T
        total += block.sum(dim=1)
    mean_u = total / V
    Gc = G - V * torch.outer(mean_u, mean_u)
    ev, Q = sym_eigh(G)
    pinv_op = _sym_inverse(ev.clamp_min(0), Q, 0.0, PINV_RCOND)
    evc, Qc = sym_eigh(Gc)
    evc = evc.clamp_min(0)
    ridge_op = _sym_inverse(evc, Qc, ridge * float(evc.mean()), None if ridge > 0 else PINV_RCOND)
    dtype = W_U.dtype
    return QueryEmbedder(
        W_U=W_U,
        W_E=W_E,
        mean_u=mean_u.to(dtype),
        pinv_op=pinv_op.to(dtype),
        ridge_op=ridge_op.to(dtype),
        gc_root=(Qc * evc.sqrt()).to(dtype),
        ridge=ridge,
    )
