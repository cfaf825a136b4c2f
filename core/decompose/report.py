"""Every method side by side on one matrix: error curves with their random controls,
how many components a labeller calls interpretable, and the atoms SVD cannot see.

The labeller comes from a later stage, so it is passed in as ``judge``: a function from
token sets (each a tuple of raw token strings) to verdicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.decompose.build import check_method, components, rows_and_weights
from core.decompose.compare import rays_vs_directions, singular_directions, unseen_atoms
from core.decompose.dictionary import K_STEPS, NNZ_STEPS, CurvePoint, dictionary_curves
from core.decompose.options import METHOD_MATRICES, Components, DecomposeOptions
from core.decompose.rows import gaussian_like, order_and_sign, svd_fvu_curve
from core.errors import SpecError
from core.progress import Progress, quiet
from core.settings import ENDS
from core.svd.project import project_topk

Judge = Callable[[Sequence[tuple[str, ...]]], list[bool]]


@dataclass(frozen=True)
class Interpretable:
    """The labeller's verdict on one method's first components.

    Attributes:
        method: ``svd``, ``dictionary``, ``nmf`` or ``ica``.
        control: on the random Gaussian matrix's components.
        end: which end of each component was judged (:data:`core.settings.ENDS`): the
            tokens of its largest projections, or of its most negative ones.
        n: components judged (the first ``n``, strongest first).
        fraction: share called interpretable.
    """

    method: str
    control: bool
    end: str
    n: int
    fraction: float


@dataclass(frozen=True)
class MethodsReport:
    """What :func:`compare_methods` found for one matrix.

    Attributes:
        matrix, layer: what was decomposed; ``n_rows`` and ``d_model`` its shape.
        curves: error curve points of every method and control.
        interpretable: labeller verdicts (empty without a judge).
        unseen: dictionary atoms no top SVD direction is close to: ``(atom, best |cos|,
            top tokens)``, farthest first, at most 20; ``unseen_fraction`` of all atoms.
        rays: :meth:`core.decompose.compare.RayStats.summary` of the rows (not for the
            embedding, whose rows are tokens, not write vectors).
        kurtosis: mean excess kurtosis of the ICA sources, real and control.
        seconds: build time of each method (real and control together; 0 when cached).
        notes: sentences on weights and sampling.
    """

    matrix: str
    layer: int
    n_rows: int
    d_model: int
    curves: list[CurvePoint]
    interpretable: list[Interpretable]
    unseen: list[tuple[int, float, tuple[str, ...]]]
    unseen_fraction: float
    unseen_threshold: float
    top_directions: int
    rays: dict[str, float] | None
    kurtosis: dict[str, float]
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form."""
        return {
            "matrix": self.matrix,
            "layer": self.layer,
            "n_rows": self.n_rows,
            "d_model": self.d_model,
            "curves": [vars(p) for p in self.curves],
            "interpretable": [vars(i) for i in self.interpretable],
            "unseen_atoms": {
                "threshold": self.unseen_threshold,
                "top_svd_directions": self.top_directions,
                "fraction": self.unseen_fraction,
                "atoms": [{"atom": a, "best_cos": c, "top": list(t)} for a, c, t in self.unseen],
            },
            "rays_vs_directions": self.rays,
            "ica_kurtosis": self.kurtosis,
            "seconds": self.seconds,
            "notes": self.notes,
        }


#: Ranks on the SVD truncation curve (as shares of ``d_model``).
RANK_SHARES: tuple[float, ...] = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


def token_sets(
    analysis: Any, c: Components, n: int, k: int = 15, end: str = "top"
) -> list[tuple[str, ...]]:
    """The ``k`` raw tokens of ``end`` (:data:`core.settings.ENDS`) of the first ``n``
    components: the largest projections (NMF: token weights), or the most negative ones.
    """
    n = min(n, c.n)
    sign = 1.0 if end == "top" else -1.0
    if c.token_weights is not None:
        idx = (sign * c.token_weights[:n]).topk(k, dim=1).indices
    else:
        idx = project_topk(sign * c.directions[:n], analysis.W_U, k).top_idx
    raw = analysis.tokens.raw
    return [tuple(raw[i] for i in row) for row in idx.tolist()]


def svd_components(
    analysis: Any, X: Float[Tensor, "n d"], matrix: str, layer: int, control: bool
) -> Components:
    """The SVD of the same rows as :class:`Components` (right singular directions, by
    singular value, token-signed).
    """
    from core.decompose.options import Components as C

    V = singular_directions(X)
    S2 = torch.linalg.svdvals(X.double()).float() ** 2
    dirs, share, _ = order_and_sign(V, S2[: V.shape[0]], analysis.W_U.float())
    return C("svd", matrix, layer, dirs, share, None, 0.0, X.shape[0], X.shape[0], control)


def source_kurtosis(X: Float[Tensor, "n d"], dirs: Float[Tensor, "c d"]) -> float:
    """Mean excess kurtosis of the sources of ``X``'s centred rows on the mixing
    directions ``dirs`` (least squares; kurtosis does not depend on their scale).
    """
    Xc = (X - X.mean(0)).double()
    S = torch.linalg.lstsq(dirs.double().T, Xc.T).solution.T  # [n, c]
    z = (S - S.mean(0)) / S.std(0).clamp_min(1e-12)
    return float(((z**4).mean(0) - 3.0).mean())


def compare_methods(
    analysis: Any,
    key: dict[str, Any],
    matrix: str,
    layer: int = 0,
    options: DecomposeOptions | None = None,
    judge: Judge | None = None,
    n_label: int = 32,
    threshold: float = 0.5,
    top_directions: int = 32,
    curves: bool = True,
    progress: Progress = quiet,
) -> MethodsReport:
    """Every method that reads ``matrix`` (see :data:`METHOD_MATRICES`) and the SVD, each
    with its random Gaussian control; builds come from the cache when there.

    Raises:
        SpecError: no method beyond the SVD reads ``matrix``, or the layer is out of range.
    """
    methods = [m for m, have in METHOD_MATRICES.items() if matrix in have]
    if not methods:
        raise SpecError(f"No method beyond the SVD reads {matrix}; use embed, mlp_out or ov.")
    for m in methods:
        check_method(m, matrix, layer, analysis.meta.n_layers)
    base = options or DecomposeOptions(seed=analysis.settings.seed)
    X, w, weights_note = rows_and_weights(analysis, matrix, layer, base.weighted)
    n, d = X.shape
    notes = [weights_note]
    points: list[CurvePoint] = []
    seconds: dict[str, float] = {}
    # SVD truncation of the same rows and of the control.
    for control, M in ((False, X), (True, gaussian_like(X, base.seed))):
        curve = svd_fvu_curve(M, w)
        for r in sorted({max(1, round(s * min(n, d))) for s in RANK_SHARES}):
            points.append(CurvePoint("svd", control, "rank", r, curve[r], r * (n + d)))
    built: dict[tuple[str, bool], Components] = {}
    kurt: dict[str, float] = {}
    steps = len(methods) * 2 + (1 if curves and "dictionary" in methods else 0)
    step = 0
    for m in methods:
        t0 = time.perf_counter()
        opts = base.replace(method=m)
        for control in (False, True):
            frac0 = step / steps

            def sub(f: float, msg: str, _a: float = frac0) -> None:
                progress(_a + f / steps, msg)

            c = components(analysis, key, opts, matrix, layer, control, sub)
            built[(m, control)] = c
            step += 1
            axis = "components" if m != "dictionary" else "K"
            x = c.n
            p = c.n * (n + d) if m != "dictionary" else c.n * d + n * opts.nnz
            points.append(CurvePoint(m, control, axis, x, c.fvu, p))
            if c.n_fit < c.n_rows:
                notes.append(f"{m}{' control' if control else ''}: {c.note}")
        seconds[m] = round(time.perf_counter() - t0, 2)
        if m == "ica":
            for control in (False, True):
                M = gaussian_like(X, base.seed) if control else X
                kurt["control" if control else "real"] = source_kurtosis(
                    M, built[(m, control)].directions
                )
    if "nmf" in methods:
        notes.append("nmf: errors are of the token-space image [relu(X W_U), relu(-X W_U)]")
    if curves and "dictionary" in methods:
        t0 = time.perf_counter()

        def sub2(f: float, msg: str) -> None:
            progress((steps - 1 + f) / steps, msg)

        dict_points = dictionary_curves(
            X, base.replace(method="dictionary"), w, NNZ_STEPS, K_STEPS, sub2
        )
        points += dict_points
        seconds["dictionary_curves"] = round(time.perf_counter() - t0, 2)
    # The labeller's verdicts on the first components of each.
    verdicts: list[Interpretable] = []
    if judge is not None:
        for control in (False, True):
            M = gaussian_like(X, base.seed) if control else X
            built[("svd", control)] = svd_components(analysis, M, matrix, layer, control)
        # Both ends, as the label store does: a component's sign is a convention (the
        # token rule), and a concept can sit at either end.
        for (m, control), c in sorted(built.items()):
            for end in ENDS:
                sets = token_sets(analysis, c, n_label, end=end)
                ok = judge(sets)
                share = sum(ok) / max(1, len(ok))
                verdicts.append(Interpretable(m, control, end, len(sets), share))
    unseen: list[tuple[int, float, tuple[str, ...]]] = []
    frac = 0.0
    if "dictionary" in methods:
        atoms = built[("dictionary", False)]
        V = singular_directions(X)[:top_directions]
        u = unseen_atoms(atoms.directions, V, threshold)
        frac = u.fraction
        shown = u.unseen[:20]
        if len(shown):
            sub_c = Components(
                "dictionary", matrix, layer, atoms.directions[shown], atoms.strength[shown],
                None, atoms.fvu, atoms.n_rows, atoms.n_fit,
            )  # fmt: skip
            sets = token_sets(analysis, sub_c, len(shown), 8)
            unseen = [(int(a), float(u.best[a]), s) for a, s in zip(shown.tolist(), sets)]
    rays = None if matrix == "embed" else rays_vs_directions(X, top_directions, base.seed).summary()
    progress(1.0, "methods compared")
    return MethodsReport(
        matrix, layer, n, d, points, verdicts, unseen, frac, threshold,
        min(top_directions, d), rays, kurt, seconds, notes,
    )  # fmt: skip
