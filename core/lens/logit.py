"""The logit lens: what the residual stream predicts after each layer.

For each row of a :class:`~core.lens.capture.Capture` (the embedding, then the stream
after each block) and each position, the stream goes through the model's final norm
and unembedding, ``softmax(norm(x) @ W_U + b_U)``: the top tokens with their
probabilities, and one target token's rank and probability. The last row is the
model's own next-token distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.lens.capture import Capture


@dataclass(frozen=True)
class LogitLens:
    """The logit lens of one prompt.

    ``rows`` is ``n_layers + 1`` (row 0 the embedding, row ``l + 1`` after block ``l``).

    Attributes:
        ids: the prompt's token ids ``[pos]``.
        top_idx: the ``k`` most probable tokens ``[rows, pos, k]``, most probable first.
        top_prob: their probabilities ``[rows, pos, k]``.
        target: the target token at each position ``[pos]``; ``-1`` where there is none
            (the last position when the target is the next token of the prompt).
        target_rank: the target's rank ``[rows, pos]``: 1 when it is the most probable
            token (1 + the tokens with a strictly larger logit); 0 where no target.
        target_prob: the target's probability ``[rows, pos]``; NaN where no target.
    """

    ids: Int[Tensor, " pos"]
    top_idx: Int[Tensor, "rows pos k"]
    top_prob: Float[Tensor, "rows pos k"]
    target: Int[Tensor, " pos"]
    target_rank: Int[Tensor, "rows pos"]
    target_prob: Float[Tensor, "rows pos"]

    def __post_init__(self) -> None:
        rows, t, k = self.top_idx.shape
        if self.top_prob.shape != (rows, t, k) or self.ids.shape != (t,):
            raise ValueError("top_idx, top_prob and ids must share rows and positions")
        if self.target.shape != (t,):
            raise ValueError(f"target must be [{t}]")
        if self.target_rank.shape != (rows, t) or self.target_prob.shape != (rows, t):
            raise ValueError(f"target_rank and target_prob must be [{rows}, {t}]")

    @property
    def n_rows(self) -> int:
        """Rows: the embedding and each block."""
        return int(self.top_idx.shape[0])


#: Most bytes of logits one product of the lens makes (a long prompt is unembedded in
#: several blocks; its 31 x 128 x 49,152 float32 logits would be 780 MB at once). In one
#: sweep of 4-64 MiB on SmolLM2-135M, 16 MiB (85 positions) was the fastest for a
#: 102-token prompt and within noise of the best for a 6-token one.
BLOCK_BYTES = 16 << 20


def row_names(n_layers: int) -> list[str]:
    """Labels of the lens's rows: ``embed``, then ``L0`` .. ``L{n_layers-1}``."""
    return ["embed", *(f"L{i}" for i in range(n_layers))]


def next_token_targets(ids: Sequence[int]) -> Int[Tensor, " pos"]:
    """Each position's next token of the prompt, ``-1`` at the last position."""
    ids = list(ids)
    return torch.tensor([*ids[1:], -1])


@torch.no_grad()
def logit_lens(cap: Capture, k: int = 5, target: int | None = None) -> LogitLens:
    """The logit lens of a captured prompt.

    Args:
        cap: one forward pass (:func:`core.lens.capture.capture`).
        k: top tokens kept per row and position (capped at the vocabulary).
        target: a token id to rank at every position; ``None``: each position's next
            token of the prompt (none at the last position).
    """
    t = cap.ids.shape[0]
    rows, V = cap.resid.shape[0], cap.W_U.shape[1]
    tgt = next_token_targets(cap.ids.tolist()) if target is None else torch.full((t,), target)
    has = tgt >= 0
    k = max(1, min(k, V))
    # Every (row, position) of the stream, row-major, unembedded in blocks of up to
    # BLOCK_BYTES of logits: one product per block rather than one per row, which read
    # all of W_U for a few positions each time (SmolLM2-135M: 31 rows of a 6-token
    # prompt took 0.67 s one by one).
    flat = cap.normed.reshape(rows * t, -1)
    safe_all = tgt.clamp_min(0).repeat(rows)
    step = max(1, BLOCK_BYTES // (V * cap.W_U.element_size()))
    top_idx, top_prob, ranks, probs = [], [], [], []
    for s in range(0, rows * t, step):
        logits = cap.unembed(flat[s : s + step])
        safe = safe_all[s : s + step, None]
        p = torch.softmax(logits, dim=-1)
        v, i = p.topk(k, dim=-1)
        top_idx.append(i)
        top_prob.append(v)
        ranks.append(1 + (logits > logits.gather(1, safe)).sum(dim=-1))
        probs.append(p.gather(1, safe)[:, 0])
    shown = has.expand(rows, t)
    rank = torch.cat(ranks).reshape(rows, t)
    prob = torch.cat(probs).reshape(rows, t)
    return LogitLens(
        ids=cap.ids,
        top_idx=torch.cat(top_idx).reshape(rows, t, k),
        top_prob=torch.cat(top_prob).reshape(rows, t, k),
        target=torch.where(has, tgt, torch.full_like(tgt, -1)),
        target_rank=torch.where(shown, rank, torch.zeros_like(rank)),
        target_prob=torch.where(shown, prob, torch.full_like(prob, float("nan"))),
    )
