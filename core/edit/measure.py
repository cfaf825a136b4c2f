"""What an edit does to the model: target log-probabilities, ablation sweeps,
specificity on reference text (KL and loss), greedy continuations.

All forward passes are plain Hugging Face ones (``core.edit.hf.plain_model``) on
models that share the loaded tensors; nothing here writes a shared tensor.

Targets: a target string is tokenised as it follows the prompt (see :func:`target_ids`)
and appended to the prompt's tokens. A multi-token target is scored as the log-probability of the whole sequence,
``sum_t log p(target_t | prompt, target_<t)``; an empty target is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.analysis import Analysis
from core.edit.hf import apply_edits, plain_model, target_module
from core.edit.rank_one import EDIT_KINDS, Edit, EditSet, RankOne, rank_one_updates, validate
from core.errors import SpecError
from core.settings import REPO_ROOT

#: Held-out text of the demo model, the default reference set for specificity.
HELDOUT_DIR = REPO_ROOT / "models" / "demo-gpt2" / "heldout"

#: Used when no held-out text exists: plain prose touching many topics.
FALLBACK_TEXT = (
    "The fire burned low in the hearth while snow fell over the quiet village. "
    "In the morning the children ran down to the frozen river, where the ice was thick "
    "enough to hold a horse. Their mother counted the eggs, one, two, three, four, and "
    "sent the eldest to the market with a basket and a few copper coins. The king's "
    "soldiers marched along the road toward the castle, their red and blue banners "
    "bright against the grey sky. A cat slept on the warm stones by the door, and a dog "
    "barked at the crows in the green field beyond the wall."
)


# --------------------------------------------------------------------------- tokens


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` with the tokenizer's usual special tokens (e.g. BOS)."""
    ids = list(tokenizer(prompt)["input_ids"])
    if not ids:
        raise SpecError("The prompt is empty; give some text with --prompt.")
    return ids


def target_ids(tokenizer: Any, target: str, prompt: str | None = None) -> list[int]:
    """Token ids of ``target`` as it would follow ``prompt``; at least one.

    When the prompt's tokens are a prefix of the tokens of ``prompt + target`` (always for
    GPT-2-style BPE with a leading space on the target), the target is what follows them,
    so SentencePiece tokenizers get their word-initial pieces right; otherwise the target
    is tokenised on its own (no special tokens).
    """
    if not target:
        raise SpecError("The target is empty; give a token such as ' fire' (mind the space).")
    if prompt:
        p = prompt_ids(tokenizer, prompt)
        joint = list(tokenizer(prompt + target)["input_ids"])
        if len(joint) > len(p) and joint[: len(p)] == p:
            return joint[len(p) :]
    ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if not ids:
        raise SpecError("The target is empty; give a token such as ' fire' (mind the space).")
    return ids


def _context(model: Any) -> int:
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return 2048


@torch.no_grad()
def _logprobs(model: Any, ids: Int[Tensor, "b t"]) -> Float[Tensor, "b t vocab"]:
    dev = next(model.parameters()).device
    logits = model(input_ids=ids.to(dev)).logits
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def _score(
    model: Any, prompt: list[int], target: list[int], rows: int = 1
) -> Float[Tensor, " rows"]:
    ids = torch.tensor([prompt + target[:-1]] * rows)
    if ids.shape[1] > _context(model):
        raise SpecError(
            f"Prompt and target are {ids.shape[1] + 1} tokens, past this model's context "
            f"of {_context(model)}; shorten the prompt."
        )
    lp = _logprobs(model, ids)[:, len(prompt) - 1 :]
    tgt = torch.tensor(target)[None, :, None].expand(rows, -1, 1)
    return lp.gather(2, tgt)[..., 0].sum(dim=1)


def target_logprob(model: Any, tokenizer: Any, prompt: str, target: str) -> float:
    """``log p(target | prompt)`` under ``model`` (summed over the target's tokens)."""
    return float(
        _score(model, prompt_ids(tokenizer, prompt), target_ids(tokenizer, target, prompt))[0]
    )


# --------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class SweepRow:
    """Direction ``index`` removed (or scaled) alone: the target's log-prob and its change."""

    index: int
    singular_value: float
    logprob: float
    delta_logprob: float


class _RowUpdates:
    """A forward hook adding a different rank-one update to each batch row's output."""

    def __init__(self, left: Tensor, right: Tensor) -> None:
        self.left, self.right = left, right  # [B, d_in], [B, d_out]

    def __call__(self, module: Any, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        x = inputs[0]
        coeff = torch.einsum("btd,bd->bt", x.double(), self.left.to(x.device))
        return output + (coeff[..., None] * self.right.to(x.device)[:, None, :]).to(output.dtype)


def run_with_row_updates(
    model: Any, ids: Int[Tensor, "b t"], updates: Sequence[RankOne]
) -> Float[Tensor, "b t vocab"]:
    """Log-probs of ``ids`` where batch row ``b`` runs with ``updates[b]`` added to its
    matrix (all updates on one matrix). Equivalent to editing the weights row by row."""
    targets = {u.target for u in updates}
    if len(targets) != 1 or len(updates) != ids.shape[0]:
        raise ValueError("one update per batch row, all on the same matrix")
    module, _ = target_module(model, next(iter(targets)))
    hook = _RowUpdates(
        torch.stack([u.left for u in updates]), torch.stack([u.right for u in updates])
    )
    handle = module.register_forward_hook(hook)
    try:
        return _logprobs(model, ids)
    finally:
        handle.remove()


def sweep(
    analysis: Analysis,
    kind: str,
    layer: int,
    head: int | None,
    prompt: str,
    target: str,
    n: int = 20,
    scale: float = 0.0,
    edits: EditSet | None = None,
    batch: int = 16,
) -> list[SweepRow]:
    """For each of the first ``n`` directions of one matrix, remove it alone (or scale
    it by ``scale``) and record the target's log-prob and its change.

    Directions are batched: each batch row runs the prompt with a different rank-one
    update added by a hook on that matrix, on top of ``edits`` (applied to a copy).
    """
    assert analysis.model is not None
    tok = analysis.model.tokenizer
    p, t = prompt_ids(tok, prompt), target_ids(tok, target, prompt)
    probe = Edit(kind, layer, head, 0, scale)
    validate(analysis, [probe])
    from core.query import kind_result

    d = kind_result(analysis, kind).decomposition
    c = d.index(layer, head)
    n = min(n, d.rank)
    base = apply_edits(analysis, edits).model if edits else plain_model(analysis)
    before = float(_score(base, p, t)[0])
    updates = rank_one_updates(analysis, [Edit(kind, layer, head, i, scale) for i in range(n)])
    ids_row = p + t[:-1]
    rows: list[SweepRow] = []
    tgt = torch.tensor(t)
    for start in range(0, n, batch):
        chunk = updates[start : start + batch]
        ids = torch.tensor([ids_row] * len(chunk))
        lp = run_with_row_updates(base, ids, chunk)[:, len(p) - 1 :]
        score = lp.gather(2, tgt[None, :, None].expand(len(chunk), -1, 1))[..., 0].sum(dim=1)
        for j, s in enumerate(score.tolist()):
            i = start + j
            rows.append(SweepRow(i, float(d.S[c, i]), s, s - before))
    return rows


# --------------------------------------------------------------------------- specificity


def reference_texts(directory: Path | None = None) -> list[str]:
    """Reference documents: the demo model's held-out ``*.txt`` (one list per file,
    documents split on blank lines), else the built-in paragraph."""
    directory = HELDOUT_DIR if directory is None else Path(directory)
    files = sorted(directory.glob("*.txt")) if directory.is_dir() else []
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    texts = [t for t in texts if t.strip()]
    return texts or [FALLBACK_TEXT]


def reference_ids(
    tokenizer: Any, texts: Sequence[str], seq_len: int = 64, n_seqs: int = 8
) -> Int[Tensor, "n t"]:
    """Up to ``n_seqs`` windows of ``seq_len`` tokens, taken round-robin from ``texts``.

    Shorter when the texts are short: one window of all their tokens at least.
    """
    streams = [
        list(tokenizer(t[: 40 * seq_len * n_seqs], add_special_tokens=False)["input_ids"])
        for t in texts
    ]
    streams = [s for s in streams if len(s) >= 2]
    if not streams:
        raise SpecError("The reference text is empty; give a text file with some words in it.")
    seq_len = min(seq_len, max(len(s) for s in streams))
    windows: list[list[int]] = []
    pos = 0
    while len(windows) < n_seqs:
        grabbed = False
        for s in streams:
            if pos + seq_len <= len(s) and len(windows) < n_seqs:
                windows.append(s[pos : pos + seq_len])
                grabbed = True
        if not grabbed:
            break
        pos += seq_len
    return torch.tensor(windows)


@dataclass(frozen=True)
class Specificity:
    """How much an edit changes the model away from its target, on reference text.

    ``kl`` is the mean over positions of ``KL(p_before || p_after)`` of the next-token
    distributions (nats); losses are mean next-token cross-entropies (nats).
    """

    kl: float
    loss_before: float
    loss_after: float
    n_tokens: int

    @property
    def loss_change(self) -> float:
        """``loss_after - loss_before``."""
        return self.loss_after - self.loss_before


@torch.no_grad()
def specificity(before: Any, after: Any, ids: Int[Tensor, "n t"], batch: int = 8) -> Specificity:
    """KL and loss change between two models on reference windows ``ids``."""
    kl_sum = nll0 = nll1 = 0.0
    count = 0
    for start in range(0, ids.shape[0], batch):
        x = ids[start : start + batch]
        lp0, lp1 = _logprobs(before, x), _logprobs(after, x)
        kl_sum += float((lp0.exp() * (lp0 - lp1)).sum(dim=-1).sum())
        nxt = x[:, 1:, None]
        nll0 -= float(lp0[:, :-1].gather(2, nxt).sum())
        nll1 -= float(lp1[:, :-1].gather(2, nxt).sum())
        count += x.shape[0] * x.shape[1]
    n_next = count - ids.shape[0]
    return Specificity(kl_sum / count, nll0 / max(n_next, 1), nll1 / max(n_next, 1), count)


# --------------------------------------------------------------------------- continuations


@torch.no_grad()
def continuation(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 20) -> str:
    """The greedy continuation of ``prompt`` (decoded new text only)."""
    ids = prompt_ids(tokenizer, prompt)
    n_ctx = _context(model)
    eos = tokenizer.eos_token_id
    new: list[int] = []
    dev = next(model.parameters()).device
    for _ in range(max_new_tokens):
        x = torch.tensor([(ids + new)[-n_ctx:]], device=dev)
        nxt = int(model(input_ids=x).logits[0, -1].argmax())
        if nxt == eos and eos is not None:
            break
        new.append(nxt)
    return str(tokenizer.decode(new))


# --------------------------------------------------------------------------- search


def edits_from_hits(hits: Iterable[Any], scale: float = 0.0) -> EditSet:
    """Edits of every editable hit of a semantic search (``core.search.engine.SearchHit`` or its
    JSON dict); QK and embedding hits are skipped (they cannot be edited)."""
    rows = []
    for h in hits:
        get = h.get if isinstance(h, dict) else lambda k, h=h: getattr(h, k)
        if get("matrix") in EDIT_KINDS:
            rows.append((get("matrix"), get("layer"), get("head"), get("index")))
    return EditSet.from_components(rows, scale)


def search_edits(
    analysis: Analysis,
    query: str,
    threshold: float = 0.15,
    top: int | None = None,
    scale: float = 0.0,
    signs: Sequence[str] = ("positive", "antipodal"),
) -> EditSet:
    """Edits of every OV/MLP direction whose |cosine| with ``query`` is at least
    ``threshold`` (across heads and layers; ``top`` caps the count, best first).

    ``signs`` keeps positive matches, antipodal ones (the query matches the bottom end),
    or both; removing a direction removes both of its ends either way.
    """
    from core.search.engine import build_index, default_kinds, search

    index = build_index(analysis, EDIT_KINDS)
    kinds = tuple(k for k in default_kinds(index) if k in EDIT_KINDS)
    res = search(index, query, threshold=threshold, top=top, kinds=kinds, k=1)
    return edits_from_hits([h for h in res.hits if h.sign in signs], scale)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class EditReport:
    """Everything ``python -m core edit`` prints for one set of edits."""

    edits: EditSet
    prompt: str
    target: str
    target_tokens: list[str]
    logprob_before: float
    logprob_after: float
    specificity: Specificity
    continuation_before: str
    continuation_after: str

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form."""
        s = self.specificity
        return {
            "edits": self.edits.spec(),
            "prompt": self.prompt,
            "target": self.target,
            "target_tokens": self.target_tokens,
            "target_logprob_before": self.logprob_before,
            "target_logprob_after": self.logprob_after,
            "delta_logprob": self.logprob_after - self.logprob_before,
            "kl_reference": s.kl,
            "loss_before": s.loss_before,
            "loss_after": s.loss_after,
            "reference_tokens": s.n_tokens,
            "continuation_before": self.continuation_before,
            "continuation_after": self.continuation_after,
        }


def measure(
    analysis: Analysis,
    edits: EditSet | Iterable[Edit],
    prompt: str,
    target: str,
    reference: Int[Tensor, "n t"] | None = None,
    max_new_tokens: int = 20,
) -> EditReport:
    """Target log-prob, specificity on ``reference`` (default: held-out text) and
    greedy continuations, before and after ``edits``."""
    assert analysis.model is not None
    edits = edits if isinstance(edits, EditSet) else EditSet().add(*edits)
    tok = analysis.model.tokenizer
    p, t = prompt_ids(tok, prompt), target_ids(tok, target, prompt)
    before = plain_model(analysis)
    after = apply_edits(analysis, edits).model
    if reference is None:
        reference = reference_ids(tok, reference_texts(), seq_len=min(64, _context(before)))
    return EditReport(
        edits=edits,
        prompt=prompt,
        target=target,
        target_tokens=[analysis.tokens.raw[i] for i in t],
        logprob_before=float(_score(before, p, t)[0]),
        logprob_after=float(_score(after, p, t)[0]),
        specificity=specificity(before, after, reference),
        continuation_before=continuation(before, tok, prompt, max_new_tokens),
        continuation_after=continuation(after, tok, prompt, max_new_tokens),
    )
