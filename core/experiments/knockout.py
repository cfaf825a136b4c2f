"""Knock out the directions labelled interpretable, or as many others.

Every direction of the chosen matrices that the stored labels call interpretable is
deleted at once (rank-one removals of :mod:`core.edit`, applied to a copy of the model),
and the effect is compared with two controls of the same size, component by component:

* ``matched``: directions labelled uninterpretable, each the nearest in singular value
  to one interpretable direction of the same matrix and layer (head, for OV), none used
  twice. Where a component runs out of labelled ones, unlabelled directions of it fill
  in, nearest in singular value again (counted in ``n_fill``).
* ``random``: as many directions of each component drawn uniformly, ``draws`` seeded
  draws (their spread is the noise the other two are read against).

Each set is measured on reference windows: the next-token loss, the mean KL of the
next-token distributions (unedited against edited, every position, as
:func:`core.edit.specificity.specificity` defines it), and the mean change of
``log p(next token)`` at the positions whose next token is among the deleted
directions' top tokens (the set's own, ``dlogprob_own``; and the interpretable set's,
``dlogprob_target``, so every set is read on the same positions too).

Verdicts come from the label store (:mod:`core.experiments.verdicts`), which labels
each end of a direction: a direction is interpretable when either end is. Results are
cached by :mod:`core.experiments.knockout_cache`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.analysis import Analysis
from core.edit.hf import apply_edits, plain_model
from core.edit.prompts import logprobs
from core.edit.rank_one import Edit
from core.errors import SpecError
from core.experiments.verdicts import LABEL_SOURCES, Key, components
from core.progress import Progress, quiet
from core.query import kind_result
from core.svd.project import project_topk

#: Kinds whose directions can be deleted.
KNOCKOUT_KINDS: tuple[str, ...] = ("ov", "mlp_in", "mlp_gate", "mlp_out")
INTERPRETABLE, MATCHED, RANDOM = "interpretable", "matched", "random"
MAX_DRAWS = 10


@dataclass(frozen=True)
class KnockoutOptions:
    """What to knock out and how to measure it.

    Attributes:
        kinds: matrices whose labelled directions are deleted.
        layers: layers (``None``: every layer).
        labeller: whose verdicts to use (:data:`LABEL_SOURCES`).
        draws: random sets.
        seed: seed of the random sets.
        k_tokens: top tokens per deleted direction that pick the target positions.
        n_label: directions per component the offline labeller labels when a component
            has no stored verdict (:func:`label_missing`).
    """

    kinds: tuple[str, ...] = ("mlp_in", "mlp_out")
    layers: tuple[int, ...] | None = None
    labeller: str = "offline"
    draws: int = 3
    seed: int = 0
    k_tokens: int = 15
    n_label: int = 30

    def __post_init__(self) -> None:
        if not self.kinds:
            raise SpecError("Choose at least one matrix, e.g. mlp_in,mlp_out.")
        for kind in self.kinds:
            if kind not in KNOCKOUT_KINDS:
                raise SpecError(
                    f"Cannot knock out {kind!r}; choose from {', '.join(KNOCKOUT_KINDS)}."
                )
        if self.labeller not in LABEL_SOURCES:
            raise SpecError(
                f"Unknown labeller {self.labeller!r}; use one of {', '.join(LABEL_SOURCES)}."
            )
        if not 0 <= self.draws <= MAX_DRAWS:
            raise SpecError(f"Draws must be between 0 and {MAX_DRAWS}, not {self.draws}.")
        if self.k_tokens < 1 or self.n_label < 1:
            raise SpecError("Give at least one top token and one direction to label.")

    def to_json(self) -> dict[str, Any]:
        return {
            "kinds": list(self.kinds),
            "layers": None if self.layers is None else list(self.layers),
            "labeller": self.labeller,
            "draws": self.draws,
            "seed": self.seed,
            "k_tokens": self.k_tokens,
        }


@dataclass(frozen=True)
class KnockoutResult:
    """One row per deleted set: ``interpretable``, ``matched``, then each random draw.

    ``dlogprob_own[s]`` is the mean change of ``log p(next)`` over the ``n_own[s]``
    positions whose next token is among set ``s``'s top tokens; ``dlogprob_target[s]``
    the same over the ``n_target`` positions of the interpretable set's tokens (nan
    where there are none). ``sigma_sum`` is the sum of the deleted singular values (how
    well the matched set matches).
    """

    options: KnockoutOptions
    layers: tuple[int, ...]
    names: tuple[str, ...]
    draw: Int[Tensor, " s"]
    n_deleted: Int[Tensor, " s"]
    sigma_sum: Float[Tensor, " s"]
    loss: Float[Tensor, " s"]
    kl: Float[Tensor, " s"]
    dlogprob_own: Float[Tensor, " s"]
    n_own: Int[Tensor, " s"]
    dlogprob_target: Float[Tensor, " s"]
    deleted: tuple[tuple[str, ...], ...]
    loss_orig: float
    n_target: int
    n_labelled: int
    n_fill: int
    n_tokens: int

    def __post_init__(self) -> None:
        s = len(self.names)
        for name in ("draw", "n_deleted", "sigma_sum", "loss", "kl", "dlogprob_own", "n_own"):
            if tuple(getattr(self, name).shape) != (s,):
                raise ValueError(f"{name} must have one value per set ({s})")
        if tuple(self.dlogprob_target.shape) != (s,) or len(self.deleted) != s:
            raise ValueError("dlogprob_target and deleted need one entry per set")

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-able dict per set (the CLI's and the dashboard's form)."""
        return [
            {
                "set": self.names[i],
                "draw": int(self.draw[i]),
                "n_deleted": int(self.n_deleted[i]),
                "sigma_sum": float(self.sigma_sum[i]),
                "loss": float(self.loss[i]),
                "loss_change": float(self.loss[i]) - self.loss_orig,
                "kl": float(self.kl[i]),
                "dlogprob_own": _num(self.dlogprob_own[i]),
                "n_own": int(self.n_own[i]),
                "dlogprob_target": _num(self.dlogprob_target[i]),
            }
            for i in range(len(self.names))
        ]

    def random_spread(self, column: str) -> dict[str, float] | None:
        """Mean, standard deviation, min and max of ``column`` over the random draws."""
        got = [r[column] for r in self.rows() if r["set"] == RANDOM]
        vals = torch.tensor([float("nan") if v is None else v for v in got], dtype=torch.float64)
        vals = vals[~vals.isnan()]
        if not len(vals):
            return None
        sd = float(vals.std()) if len(vals) > 1 else 0.0
        return {"mean": float(vals.mean()), "std": sd, "min": float(vals.min()),
                "max": float(vals.max())}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        cols = ("loss_change", "kl", "dlogprob_own", "dlogprob_target")
        return {
            "options": self.options.to_json(),
            "layers": list(self.layers),
            "loss_orig": self.loss_orig,
            "n_tokens": self.n_tokens,
            "n_target": self.n_target,
            "n_labelled": self.n_labelled,
            "n_fill": self.n_fill,
            "sets": self.rows(),
            "random": {c: self.random_spread(c) for c in cols},
            "deleted": {
                f"{n}{'' if n != RANDOM else ' ' + str(int(d))}": list(s)
                for n, d, s in zip(self.names, self.draw, self.deleted)
            },  # fmt: skip
        }


def _num(x: Tensor) -> float | None:
    v = float(x)
    return None if v != v else v


# ----------------------------------------------------------------------------- sets


def choose_sets(
    analysis: Analysis,
    verdicts: Mapping[Key, bool],
    components: Sequence[tuple[str, int, int | None]],
    draws: int,
    seed: int = 0,
) -> tuple[list[list[Key]], int]:
    """The interpretable set, its singular-value-matched control, and ``draws`` random
    sets (the module docstring), and how many matched directions were unlabelled fill.
    """
    interp: list[Key] = []
    matched: list[Key] = []
    randoms: list[list[Key]] = [[] for _ in range(draws)]
    gens = [torch.Generator().manual_seed(seed + 1000 * j) for j in range(draws)]
    fill = 0
    for kind, layer, head in components:
        d = kind_result(analysis, kind).decomposition
        S = d.S[d.index(layer, head)].double()
        rank = d.rank
        yes = [i for i in range(rank) if verdicts.get((kind, layer, head, i)) is True]
        if not yes:
            continue
        no = {i for i in range(rank) if verdicts.get((kind, layer, head, i)) is False}
        unlabelled = {i for i in range(rank) if (kind, layer, head, i) not in verdicts}
        for i in sorted(yes, key=lambda i: -float(S[i])):
            for pool, is_fill in ((no, False), (unlabelled, True)):
                if pool:
                    j = min(pool, key=lambda j: (abs(float(S[j] - S[i])), j))
                    pool.discard(j)
                    matched.append((kind, layer, head, j))
                    fill += is_fill
                    break
        interp += [(kind, layer, head, i) for i in yes]
        for g, out in zip(gens, randoms):
            out += [
                (kind, layer, head, int(i)) for i in torch.randperm(rank, generator=g)[: len(yes)]
            ]
    return [interp, matched, *randoms], fill


def top_token_ids(
    analysis: Analysis, kind: str, layer: int, head: int | None, indices: Sequence[int], k: int
) -> Int[Tensor, "n k"]:
    """The top ``k`` token ids of each listed direction, as :func:`core.query.directions`
    lists them (the cache's sign-ruled projection, else projected here with the same rule).
    """
    res = kind_result(analysis, kind)
    d = res.decomposition
    c = d.index(layer, head)
    idx = torch.tensor(list(indices), dtype=torch.long)
    if k <= analysis.svd.k and (not len(idx) or int(idx.max()) < res.n_projected):
        return res.tops.top_idx[c * res.n_projected + idx, :k]
    t = project_topk(d.directions[c][:, idx].T, analysis.W_U, k, analysis.settings.vocab_chunk)
    cached = idx < res.n_projected
    t = t.flipped((t.top_val[:, 0] < -t.bottom_val[:, 0]) & ~cached)
    top = t.top_idx.clone()
    if cached.any() and k <= analysis.svd.k:  # the cache's orientation for those
        top[cached] = res.tops.top_idx[c * res.n_projected + idx[cached], :k]
    return top


def _token_set(analysis: Analysis, keys: Sequence[Key], k: int) -> Int[Tensor, " m"]:
    by_comp: dict[tuple[str, int, int | None], list[int]] = {}
    for kind, layer, head, i in keys:
        by_comp.setdefault((kind, layer, head), []).append(i)
    parts = [top_token_ids(analysis, *comp, idx, k).reshape(-1) for comp, idx in by_comp.items()]
    return torch.unique(torch.cat(parts)) if parts else torch.zeros(0, dtype=torch.long)


# ----------------------------------------------------------------------------- measuring


@torch.no_grad()
def _effects(
    base: Sequence[Tensor],
    model: Any,
    ids: Int[Tensor, "n t"],
    batch: int,
    masks: Sequence[Bool[Tensor, "n t1"]],
) -> tuple[float, float, list[float]]:
    """Loss, mean KL(base || model) and, per mask, the mean change of ``log p(next)``
    over its positions (nan when it has none).
    """
    nll = kl = 0.0
    dsum = [0.0] * len(masks)
    for j, s in enumerate(range(0, ids.shape[0], batch)):
        x = ids[s : s + batch]
        lp0, lp1 = base[j], logprobs(model, x)
        kl += float((lp0.exp() * (lp0 - lp1)).sum(-1).sum())
        nxt = x[:, 1:, None]
        g1 = lp1[:, :-1].gather(2, nxt)[..., 0]
        delta = g1 - lp0[:, :-1].gather(2, nxt)[..., 0]
        nll -= float(g1.sum())
        for m, mask in enumerate(masks):
            dsum[m] += float(delta[mask[s : s + batch]].sum())
    n, t = ids.shape
    deltas = [v / int(m.sum()) if int(m.sum()) else float("nan") for v, m in zip(dsum, masks)]
    return nll / max(n * (t - 1), 1), kl / max(n * t, 1), deltas


def knockout(
    analysis: Analysis,
    ids: Int[Tensor, "n t"],
    verdicts: Mapping[Key, bool],
    options: KnockoutOptions = KnockoutOptions(),
    progress: Progress = quiet,
    batch: int = 8,
) -> KnockoutResult:
    """Delete the interpretable, matched and random sets in turn and measure each.

    Raises:
        SpecError: no direction of the chosen matrices and layers is labelled
            interpretable, or a matrix or layer the model does not have.
    """
    layers = list(range(analysis.meta.n_layers)) if options.layers is None else options.layers
    comps = components(analysis, options.kinds, layers)
    chosen = {k: v for k, v in verdicts.items() if k[:3] in set(comps)}
    sets, fill = choose_sets(analysis, chosen, comps, options.draws, options.seed)
    if not sets[0]:
        raise SpecError(
            f"No direction of {', '.join(options.kinds)} in these layers is labelled "
            f"interpretable by the {options.labeller} labeller; label more directions "
            "(python -m core label) or choose other matrices."
        )
    names = [INTERPRETABLE, MATCHED] + [RANDOM] * options.draws
    draw = [0, 0, *range(options.draws)]
    before = plain_model(analysis)
    base = [logprobs(before, ids[s : s + batch]) for s in range(0, ids.shape[0], batch)]
    loss_orig = -sum(
        float(lp[:, :-1].gather(2, ids[s : s + batch, 1:, None]).sum())
        for lp, s in zip(base, range(0, ids.shape[0], batch))
    ) / max(ids.shape[0] * (ids.shape[1] - 1), 1)
    nxt = ids[:, 1:]
    target = torch.isin(nxt, _token_set(analysis, sets[0], options.k_tokens))
    rows = []
    for j, keys in enumerate(sets):
        progress(j / len(sets), f"deleting the {names[j]} set ({len(keys)} directions)")
        own = torch.isin(nxt, _token_set(analysis, keys, options.k_tokens))
        sigma = sum(_sigma(analysis, key) for key in keys)
        edited = apply_edits(analysis, [Edit(k, la, h, i, 0.0) for k, la, h, i in keys]).model
        loss, kl, (d_own, d_target) = _effects(base, edited, ids, batch, [own, target])
        rows.append((len(keys), sigma, loss, kl, d_own, int(own.sum()), d_target))
        del edited
    progress(1.0, f"knocked out {len(sets)} sets")
    cols = list(zip(*rows))
    return KnockoutResult(
        options=options,
        layers=tuple(layers),
        names=tuple(names),
        draw=torch.tensor(draw),
        n_deleted=torch.tensor(cols[0]),
        sigma_sum=torch.tensor(cols[1], dtype=torch.float64),
        loss=torch.tensor(cols[2], dtype=torch.float64),
        kl=torch.tensor(cols[3], dtype=torch.float64),
        dlogprob_own=torch.tensor(cols[4], dtype=torch.float64),
        n_own=torch.tensor(cols[5]),
        dlogprob_target=torch.tensor(cols[6], dtype=torch.float64),
        deleted=tuple(tuple(_spec(k) for k in keys) for keys in sets),
        loss_orig=loss_orig,
        n_target=int(target.sum()),
        n_labelled=len(chosen),
        n_fill=fill,
        n_tokens=int(ids.numel()),
    )


def _sigma(analysis: Analysis, key: Key) -> float:
    kind, layer, head, index = key
    d = kind_result(analysis, kind).decomposition
    return float(d.S[d.index(layer, head), index])


def _spec(key: Key) -> str:
    kind, layer, head, index = key
    return Edit(kind, layer, head, index).spec()
