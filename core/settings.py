"""One settings dataclass that every stage of the pipeline reads its options from.

Nothing inside ``core`` reads environment variables or ``sys.argv``: the CLI and the
dashboard build a :class:`Settings` and pass it down.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Processing = Literal["raw", "post"]
Device = Literal["auto", "cpu", "cuda"]
#: How a direction is read as tokens (:func:`core.svd.project.read_unembed`).
Projection = Literal["raw", "centred", "standardized"]
PROJECTIONS: tuple[str, ...] = ("raw", "centred", "standardized")
#: Where the float64 Gram eigendecompositions of the MLP matrices run
#: (:mod:`core.svd.gram`).
GramRoute = Literal["device", "host"]
GRAM_ROUTES: tuple[str, ...] = ("device", "host")
#: The projection chosen by measurement (README, "Projection"): the largest gap between
#: the real directions' and the random control's interpretable share.
DEFAULT_PROJECTION: Projection = "standardized"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "demo-gpt2"
DEFAULT_CACHE_DIR = REPO_ROOT / "cache"

#: Matrix kinds, in the order the dashboard lists them.
MATRIX_KINDS: tuple[str, ...] = ("ov", "qk", "mlp_in", "mlp_gate", "mlp_out", "embed")
HEAD_KINDS: frozenset[str] = frozenset({"ov", "qk"})
#: A direction's two ends: the tokens of its largest and of its most negative projections
#: (the sign rule, :func:`core.svd.project.token_signs`, only decides which is "top").
ENDS: tuple[str, ...] = ("top", "bottom")
#: Display name of one matrix of each kind (``L3 H5 OV``, ``L2 MLP in``), in
#: ``MATRIX_KINDS`` order.
KIND_NAMES: dict[str, str] = {
    "ov": "OV",
    "qk": "QK",
    "mlp_in": "MLP in",
    "mlp_gate": "MLP gate",
    "mlp_out": "MLP out",
    "embed": "Embedding",
}
#: Sides of each kind with activations (:mod:`core.activations.readers`): the first is
#: the one ``U`` holds, the second ``V``. Here, not there, so the CLI's parser lists them
#: without importing the activations package.
ACTIVATION_SIDES: dict[str, tuple[str, ...]] = {
    "ov": ("read", "write"),
    "qk": ("query", "key"),
    "mlp_in": ("read",),
    "mlp_gate": ("read",),
    "mlp_out": ("write",),
}
#: Display name of all the matrices of a kind taken together, a block of the model
#: (``OV heads``, ``MLP in``), in ``MATRIX_KINDS`` order.
BLOCK_NAMES: dict[str, str] = {
    k: f"{name} heads" if k in HEAD_KINDS else name for k, name in KIND_NAMES.items()
}


@dataclass(frozen=True)
class Settings:
    """Options shared by loading, decomposition, projection and the cache.

    Attributes:
        model: ``"default"`` (the embedded demo model), a Hugging Face id, or a local
            checkpoint directory.
        processing: ``"post"`` folds the normalisation before each reading matrix into
            it (scale, and centring for LayerNorm), as the original post's code did;
            ``"raw"`` uses the weights exactly as stored. Writing matrices are the same.
        device: where decompositions are computed; ``"auto"`` takes CUDA when present.
        cache_dir: root of the on-disk cache.
        k: tokens kept per end (top and bottom) of each projected direction in the cache.
        n_project: directions per matrix whose token projection is cached (and whose
            sign follows the token rule); ``None`` projects every direction.
        degeneracy_tol: relative gap ``(s_i - s_{i+1}) / s_i`` under which two
            neighbouring singular values are flagged as near-degenerate.
        vocab_chunk: vocabulary columns projected at once; bounds memory for big vocabularies.
        seed: seed of the random Gaussian controls.
        projection: how directions are read as tokens, for every consumer (cache, grid,
            search, labels, edit reports): ``raw`` ``v @ W_U`` (the post's), ``centred``
            ``v @ (W_U - mean column)``, ``standardized`` each token's centred logit
            divided by its standard deviation under random unit directions (see
            :func:`core.svd.project.read_unembed`). Part of the cache key.
        kinds: matrix kinds the precompute builds (kinds a model lacks are skipped).
        gram_eigh: where the MLP matrices' Gram eigendecompositions run: ``device``
            (with the rest of the decomposition) or ``host`` (on CPU threads, started
            before the first kind, so on a GPU they overlap the OV heads'); see
            :mod:`core.svd.gram`. The results are the same; not part of the cache key.
    """

    model: str = "default"
    processing: Processing = "post"
    device: Device = "auto"
    cache_dir: Path = DEFAULT_CACHE_DIR
    k: int = 50
    n_project: int | None = None
    degeneracy_tol: float = 1e-3
    vocab_chunk: int = 16384
    seed: int = 0
    projection: Projection = DEFAULT_PROJECTION
    kinds: tuple[str, ...] = MATRIX_KINDS
    gram_eigh: GramRoute = "device"

    def __post_init__(self) -> None:
        if self.processing not in ("raw", "post"):
            raise ValueError(f"processing must be 'raw' or 'post', not {self.processing!r}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}.")
        if self.projection not in PROJECTIONS:
            raise ValueError(
                f"projection must be one of {', '.join(PROJECTIONS)}, not {self.projection!r}."
            )
        if self.gram_eigh not in GRAM_ROUTES:
            raise ValueError(
                f"gram_eigh must be one of {', '.join(GRAM_ROUTES)}, not {self.gram_eigh!r}."
            )
        if self.k < 1:
            raise ValueError(f"k must be at least 1, not {self.k}.")
        if self.n_project is not None and self.n_project < 1:
            raise ValueError(f"n_project must be at least 1 or None, not {self.n_project}.")
        unknown = set(self.kinds) - set(MATRIX_KINDS)
        if unknown:
            raise ValueError(
                f"unknown matrix kind {sorted(unknown)[0]!r}: use one of {', '.join(MATRIX_KINDS)}."
            )

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def torch_device(self) -> str:
        """The concrete torch device name for ``device``.

        Raises:
            SpecError: ``cuda`` was asked for and torch sees no CUDA device.
        """
        if self.device == "cpu":
            return "cpu"
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if not torch.cuda.is_available():
            from core.errors import SpecError

            build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise SpecError(
                f"--device cuda was asked for, but CUDA is not available here (torch "
                f"{torch.__version__}, {build}); run with --device cpu or --device auto."
            )
        return self.device
