"""Directions through a series of checkpoints of one model.

For one component: the matched cosines between consecutive checkpoints (does a
direction stay put or rotate?), each direction of the final checkpoint followed back
through training (its optimal partner's cosine and top tokens at every checkpoint: when
does it appear?), and the spectrum at each checkpoint. :func:`drift` gives the same
consecutive cosines for every component of a kind at once (the heatmap of a block).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.analysis import Analysis
from core.compare.match import check_same_tokenizer, match_images, spectrum, token_images
from core.errors import SpecError
from core.query import directions, kind_result


def list_checkpoints(folder: Path) -> list[Path]:
    """The checkpoint folders (those holding ``config.json``) directly under ``folder``,
    in training order: by the last number in the name (``step-100`` before ``step-1000``).

    Raises:
        SpecError: ``folder`` holds no checkpoint.
    """
    found = [p for p in sorted(Path(folder).iterdir()) if (p / "config.json").is_file()]
    if not found:
        raise SpecError(
            f"{folder} holds no checkpoint folder (a sub-folder with config.json); "
            "save checkpoints there or list the models with commas."
        )

    def step(p: Path) -> tuple[int, str]:
        nums = re.findall(r"\d+", p.name)
        return (int(nums[-1]) if nums else -1, p.name)

    return sorted(found, key=step)


@dataclass(frozen=True)
class Trajectory:
    """One component followed through ``t`` checkpoints (``n`` directions).

    Attributes:
        kind, layer, head: the component.
        names: the checkpoints, in training order.
        steps: ``|cos|`` of each direction of checkpoint ``i + 1`` with its optimal
            partner in checkpoint ``i``, per consecutive pair ``[t - 1, n]``.
        best: for each direction of the final checkpoint, ``|cos|`` of its optimal
            partner at each checkpoint ``[t, n]`` (1 on the last row).
        best_index: that partner's index at each checkpoint ``[t, n]``.
        sign: ``+1``/``-1``, the sign that turns the partner into the final direction ``[t, n]``.
        tokens: top tokens of that partner, ``tokens[checkpoint][direction]``, read from
            its end that points the final direction's way (its bottom end when the sign
            is -1), so the tokens of one row are comparable across checkpoints.
        spectra: singular values of the component at each checkpoint ``[t, r]``.
    """

    kind: str
    layer: int
    head: int | None
    names: tuple[str, ...]
    steps: Float[Tensor, "pair n"]
    best: Float[Tensor, "t n"]
    best_index: Int[Tensor, "t n"]
    sign: Int[Tensor, "t n"]
    tokens: tuple[tuple[tuple[str, ...], ...], ...]
    spectra: Float[Tensor, "t r"]

    def __post_init__(self) -> None:
        t, n = self.best.shape
        if t != len(self.names) or self.steps.shape != (t - 1, n):
            raise ValueError(
                f"best {tuple(self.best.shape)} / steps {tuple(self.steps.shape)} for {t} checkpoints"
            )
        if (
            self.best_index.shape != (t, n)
            or self.sign.shape != (t, n)
            or len(self.tokens) != t
            or self.spectra.shape[0] != t
        ):
            raise ValueError("best_index, tokens and spectra need one row per checkpoint")

    def appears(self, threshold: float = 0.9) -> list[int]:
        """Per direction of the final checkpoint, the first checkpoint from which its
        partner's ``|cos|`` stays at or above ``threshold``.
        """
        t = len(self.names)
        out = []
        for j in range(self.best.shape[1]):
            first = t - 1
            for i in range(t - 1, -1, -1):
                if self.best[i, j] < threshold:
                    break
                first = i
            out.append(first)
        return out

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form."""
        return {
            "kind": self.kind,
            "layer": self.layer,
            "head": self.head,
            "checkpoints": list(self.names),
            "consecutive_cos": [[round(float(x), 6) for x in row] for row in self.steps],
            "directions": [
                {
                    "index": j,
                    "appears_at": a,
                    "cos": [round(float(self.best[i, j]), 6) for i in range(len(self.names))],
                    "partner": [int(self.best_index[i, j]) for i in range(len(self.names))],
                    "sign": [int(self.sign[i, j]) for i in range(len(self.names))],
                    "top": [list(self.tokens[i][j]) for i in range(len(self.names))],
                }
                for j, a in enumerate(self.appears())
            ],
            "spectra": [[float(x) for x in row] for row in self.spectra],
        }


def series(
    analyses: Sequence[Analysis],
    kind: str,
    layer: int,
    head: int | None = None,
    n: int | None = None,
    n_tokens: int = 5,
) -> Trajectory:
    """Follow one component's first ``n`` directions (all when ``None``) through
    ``analyses`` (checkpoints in training order, at least two).

    Raises:
        SpecError: fewer than two checkpoints, or they do not share a tokenizer.
    """
    if len(analyses) < 2:
        raise SpecError(
            "A trajectory needs at least two checkpoints; give a folder of them or a list."
        )
    for other in analyses[1:]:
        check_same_tokenizer(analyses[0], other)
    images = [token_images(a, kind, layer, head, n) for a in analyses]
    m = min(len(x) for x in images)
    images = [x[:m] for x in images]
    steps = []
    for prev, cur in zip(images[:-1], images[1:], strict=True):
        _, pairs, matched, _, _ = match_images(cur, prev, 1)
        steps.append(matched[pairs[:, 0].argsort()])
    best, index, signs = [], [], []
    final = images[-1]
    for img in images:
        _, pairs, matched, sign, _ = match_images(final, img, 1)
        best.append(matched)
        index.append(pairs[:, 1])
        signs.append(sign)
    best_index, best_sign = torch.stack(index), torch.stack(signs)
    tokens = []
    for a, idx, sg in zip(analyses, best_index, best_sign, strict=True):
        rows = directions(a, kind, layer, head, n=m, k=n_tokens)
        ends = [
            rows[int(i)].top if s > 0 else rows[int(i)].bottom for i, s in zip(idx, sg, strict=True)
        ]
        tokens.append(tuple(tuple(t for _, t, _ in end) for end in ends))
    spectra = [spectrum(a, kind, layer, head) for a in analyses]
    r = min(len(s) for s in spectra)
    return Trajectory(
        kind,
        layer,
        head,
        tuple(a.meta.name for a in analyses),
        torch.stack(steps),
        torch.stack(best),
        best_index,
        best_sign,
        tuple(tokens),
        torch.stack([s[:r] for s in spectra]),
    )


def drift(analyses: Sequence[Analysis], kind: str, n: int = 8) -> Float[Tensor, "pair comp"]:
    """Mean ``|cos|`` of the first ``n`` directions of every component of ``kind`` with
    their optimal partners in the previous checkpoint, per consecutive pair: the
    heatmap of which components move when.
    """
    if len(analyses) < 2:
        raise SpecError(
            "A drift map needs at least two checkpoints; give a folder of them or a list."
        )
    comps = kind_result(analyses[-1], kind).decomposition.components
    out = torch.zeros(len(analyses) - 1, len(comps))
    for c, (layer, head) in enumerate(comps):
        imgs = [token_images(a, kind, layer, head, n) for a in analyses]
        for t in range(len(analyses) - 1):
            _, _, matched, _, _ = match_images(imgs[t + 1], imgs[t], 1)
            out[t, c] = matched.mean()
    return out


def kind_spectra(analyses: Sequence[Analysis], kind: str) -> Float[Tensor, "t r"]:
    """Mean singular values over the components of ``kind`` at each checkpoint: the
    kind's spectrum over training.
    """
    rows = []
    for a in analyses:
        rows.append(kind_result(a, kind).decomposition.S.float().mean(0))
    r = min(len(x) for x in rows)
    return torch.stack([x[:r] for x in rows])
