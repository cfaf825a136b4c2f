"""Under-trained tokens, detected from the weights alone (after Land & Bartolo 2024,
"Fishing for Magikarp: Automatically Detecting Under-trained Tokens in Large Language
Models").

A token that (almost) never occurs in training gets no gradient through its embedding
row, and through its unembedding column only the push that lowers its logit everywhere.
With weight decay and that shared push, such tokens drift towards one common
"unused" direction, and their rows pile up in any list of extreme projections (the
" ChannelType", "MetaInfo" crowding the grid shows). The indicator:

1. A **reference set** of tokens known to be unused: tokens that no text encodes to
   (``decode`` then ``encode`` does not give the token back, and its text is not a
   partial UTF-8 sequence, whose byte tokens are used inside longer characters), and
   added special / reserved tokens. Tokens the caller knows were unused can be added.
2. The unembedding columns (rows of the embedding when they are tied) with their first
   principal component removed: it is a direction every token shares (a frequency or
   bias direction) that would otherwise dominate every cosine.
3. The score of a token: the cosine between its vector (step 2) and the mean of the
   reference tokens' vectors (step 2).
4. The threshold: halfway between the median score of the reference tokens (a typical
   unused token) and the median score of the whole vocabulary (a typical trained
   token: this assumes, as holds for trained language models, that most of the
   vocabulary is trained). A token is flagged when it sits closer to the first.
   Medians, because both groups have outliers: reference tokens the model did learn
   (special tokens of a chat template or of its pretraining data score like trained
   tokens and are not flagged: the weights decide), and the under-trained tail of the
   vocabulary itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor


@dataclass(frozen=True)
class UndertrainedTokens:
    """The per-vocabulary verdict.

    Attributes:
        score: cosine of each token's (first-PC-removed) vector to the mean of the
            reference tokens'.
        under_trained: tokens whose score reaches the threshold.
        reference: the reference (known-unused) tokens.
        threshold: the score at and above which a token is flagged.
    """

    score: Float[Tensor, " d_vocab"]
    under_trained: Bool[Tensor, " d_vocab"]
    reference: Bool[Tensor, " d_vocab"]
    threshold: float

    @property
    def trained(self) -> Bool[Tensor, " d_vocab"]:
        """The complement: tokens kept by the ``trained`` token filter."""
        return ~self.under_trained


def reference_tokens(
    tokenizer: Any,
    d_vocab: int,
    extra: Iterable[int] = (),
    texts: Sequence[str] | None = None,
) -> Bool[Tensor, " d_vocab"]:
    """Tokens known to be unused: unreachable by encoding, special/added, or ``extra``.

    Ids past the tokenizer's vocabulary (padded embedding rows) are unused too.
    ``texts`` are the tokens' ``decode([i])`` when the caller has them already.
    """
    n = min(len(tokenizer), d_vocab)
    ref = torch.zeros(d_vocab, dtype=torch.bool)
    ref[n:] = True
    texts = list(texts[:n]) if texts is not None else [tokenizer.decode([i]) for i in range(n)]
    enc = _encode_all(tokenizer, texts)
    for i, (text, ids) in enumerate(zip(texts, enc)):
        if list(ids) != [i] and "\ufffd" not in text and text != "":
            ref[i] = True
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials = set(getattr(tokenizer, "all_special_ids", []) or []) | set(added)
    for i in [*specials, *extra]:
        if 0 <= int(i) < d_vocab:
            ref[int(i)] = True
    return ref


def _encode_all(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Each text's ids: batched through a Hugging Face tokenizer, else one ``encode`` at
    a time; a tokenizer that cannot encode makes no token unreachable.
    """
    if callable(tokenizer):
        return [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        return [[i] for i in range(len(texts))]
    return [list(encode(t, add_special_tokens=False)) for t in texts]


def detect(
    W_U: Float[Tensor, "d_model d_vocab"], reference: Bool[Tensor, " d_vocab"]
) -> UndertrainedTokens:
    """Score every token against the reference set (see the module docstring).

    Args:
        W_U: unembedding (``x @ W_U``); pass ``W_E.T`` to score the embedding instead.
        reference: known-unused tokens (at least two).

    Raises:
        ValueError: fewer than two reference tokens.
    """
    if int(reference.sum()) < 2:
        raise ValueError("At least two reference (known-unused) tokens are needed to score.")
    U = W_U.detach().T.float()  # [d_vocab, d_model]
    centred = U - U.mean(0, keepdim=True)
    # First principal component of the columns: the top eigenvector of their
    # d_model x d_model covariance (cheaper than an SVD of the whole vocabulary).
    _, vecs = torch.linalg.eigh((centred.T @ centred).double())
    pc = vecs[:, -1].float()
    X = U - (U @ pc)[:, None] * pc[None, :]
    mean_ref = X[reference].mean(0)
    score = torch.nn.functional.cosine_similarity(X, mean_ref[None, :], dim=1)
    threshold = 0.5 * float(score[reference].median() + score.median())
    return UndertrainedTokens(
        score=score.float(),
        under_trained=score >= threshold,
        reference=reference.clone(),
        threshold=threshold,
    )


def undertrained_tokens(
    tokenizer: Any, W_U: Float[Tensor, "d_model d_vocab"], extra: Iterable[int] = ()
) -> UndertrainedTokens | None:
    """:func:`detect` with :func:`reference_tokens`; ``None`` when the tokenizer gives
    fewer than two reference tokens (nothing to compare with).
    """
    ref = reference_tokens(tokenizer, W_U.shape[1], extra)
    if int(ref.sum()) < 2:
        return None
    return detect(W_U, ref)
