"""The embedding's sparse dictionary through a checkpoint series: does training make the
embedding sparser (the seed question "is the model trying to reduce this noise?")?

Each checkpoint's ``W_E`` gets the same dictionary build as the Methods page
(:func:`core.decompose.components`, cached in that checkpoint's entry), beside the same
dictionary fitted to a random Gaussian matrix of its shape and scale. A sparse overbasis is
real only where the weights' unexplained fraction falls below the control's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.analysis import Analysis, settings_key
from core.decompose import DecomposeOptions, components
from core.decompose.build import n_rows
from core.progress import Progress, quiet


@dataclass(frozen=True)
class DictionaryPoint:
    """One checkpoint's embedding dictionary.

    Attributes:
        checkpoint: the model's name.
        fvu: fraction of the (frequency-weighted) squared norm of ``W_E`` the dictionary
            leaves unexplained.
        control_fvu: the same for the random Gaussian matrix of ``W_E``'s shape and scale.
        n_atoms: atoms ``K``; nnz: non-zeros per token's code.
    """

    checkpoint: str
    fvu: float
    control_fvu: float
    n_atoms: int
    nnz: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (rounded)."""
        return {
            "checkpoint": self.checkpoint,
            "fvu": round(self.fvu, 5),
            "control_fvu": round(self.control_fvu, 5),
            "n_atoms": self.n_atoms,
            "nnz": self.nnz,
        }


def dictionary_series(
    analyses: Sequence[Analysis],
    options: DecomposeOptions | None = None,
    progress: Progress = quiet,
) -> list[DictionaryPoint]:
    """The embedding dictionary of every checkpoint in ``analyses`` (training order), and
    of its random control; built once per checkpoint and options, then read from its
    cache entry.
    """
    opts = options if options is not None else DecomposeOptions(method="dictionary")
    if opts.method != "dictionary":
        opts = opts.replace(method="dictionary")
    out = []
    steps = 2 * len(analyses)
    for i, a in enumerate(analyses):
        key = settings_key(a.settings)
        fits = []
        for j, control in enumerate((False, True)):
            at = (2 * i + j) / steps

            def sub(frac: float, msg: str, _at: float = at, _name: str = a.meta.name) -> None:
                progress(_at + frac / steps, f"{_name}: {msg}")

            fits.append(components(a, key, opts, "embed", 0, control, sub))
        real, ctrl = fits
        k = opts.components_for(a.meta.d_model, n_rows(a.meta, "embed"))
        out.append(DictionaryPoint(a.meta.name, real.fvu, ctrl.fvu, k, opts.nnz))
    progress(1.0, "done")
    return out
