"""Build one method's components for one matrix of an analysis, cached beside its SVD.

A build is a derived part of the analysis's cache entry
(:func:`core.cache.parts.save_part`: safetensors + JSON), named by method, matrix, layer
and control, whose JSON records the options it was built with: a changed option or seed
is a different build, and the part is rebuilt. The analysis is taken duck-typed (its
``settings``, ``meta``, ``W_U``, ``weights``, ``tokenizer`` and ``source.path``) since this
stage comes before :mod:`core.analysis`; ``key`` is the entry's settings key
(:func:`core.analysis.settings_key`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.cache import parts as cache_parts
from core.decompose.dictionary import dictionary
from core.decompose.ica import ica
from core.decompose.nmf import nmf
from core.decompose.options import METHOD_MATRICES, Components, DecomposeOptions
from core.decompose.rows import matrix_rows, reference_texts, token_frequencies, uniform
from core.errors import CacheError, SpecError
from core.progress import Progress, quiet
from core.settings import KIND_NAMES


def check_method(method: str, matrix: str, layer: int, n_layers: int) -> None:
    """Raise :class:`SpecError` (one sentence) when ``method`` cannot read ``matrix`` at ``layer``."""
    if method == "svd":
        return
    if method not in METHOD_MATRICES:
        raise SpecError(f"Unknown method {method!r}; use svd, {', '.join(METHOD_MATRICES)}.")
    have = METHOD_MATRICES[method]
    if matrix not in have:
        names = ", ".join(have)
        raise SpecError(f"{method} reads {names}, not {matrix}; pick one of those or use svd.")
    top = 0 if matrix == "embed" else n_layers - 1
    if not 0 <= layer <= top:
        raise SpecError(f"Layer {layer} is out of range for {KIND_NAMES[matrix]}; use 0 to {top}.")


def rows_and_weights(
    analysis: Any, matrix: str, layer: int, weighted: bool = True
) -> tuple[Float[Tensor, "n d"], Float[Tensor, " n"], str]:
    """The rows of ``matrix`` (see :func:`core.decompose.rows.matrix_rows`), their
    weights, and a sentence saying which weights.

    The embedding's rows are weighted by token frequency in the checkpoint's
    ``heldout/*.txt`` when ``weighted`` and such text exists; everything else is uniform.
    """
    X = analysis.W_E.float() if matrix == "embed" else matrix_rows(analysis.weights, matrix, layer)
    if matrix == "embed" and weighted:
        path = Path(analysis.source.path)
        texts = reference_texts(path if path.is_dir() else None)
        if texts and analysis.tokenizer is not None:
            w = token_frequencies(analysis.tokenizer, texts, X.shape[0])
            names = ", ".join(p.name for p in texts)
            return X, w, f"tokens weighted by frequency (+1) in {names}"
    return X, uniform(X.shape[0]), "rows weighted uniformly"


def part_name(options: DecomposeOptions, matrix: str, layer: int, control: bool) -> str:
    """The cache part of one build (the options are in its JSON, not its name)."""
    return f"decomp-{options.method}-{matrix}-{layer}" + ("-control" if control else "")


def n_rows(meta: Any, matrix: str) -> int:
    """Rows of ``matrix`` (see :func:`core.decompose.rows.matrix_rows`) for a model's shapes."""
    return {
        "embed": meta.d_vocab,
        "mlp_out": meta.d_mlp,
        "mlp_in": meta.d_mlp,
        "ov": meta.n_heads * meta.d_head,
    }[matrix]


def _extra(options: DecomposeOptions, meta: Any, matrix: str) -> dict[str, Any]:
    return {
        "options": options.to_json(),
        "n_components": options.components_for(meta.d_model, n_rows(meta, matrix)),
        "n_iter": options.iterations(),
    }


def load_components(
    analysis: Any, key: dict[str, Any], options: DecomposeOptions, matrix: str, layer: int,
    control: bool = False,
) -> Components | None:  # fmt: skip
    """The cached build, or ``None`` when there is none for these options."""
    s = analysis.settings
    want = _extra(options, analysis.meta, matrix)
    name = part_name(options, matrix, layer, control)
    try:
        extra, t = cache_parts.load_part(s.cache_dir, analysis.meta, s.processing, key, name)
        if {k: extra.get(k) for k in want} != want:
            return None
        return Components(
            method=options.method,
            matrix=matrix,
            layer=layer,
            directions=t["directions"],
            strength=t["strength"],
            token_weights=t.get("token_weights"),
            fvu=float(extra["fvu"]),
            n_rows=int(extra["n_rows"]),
            n_fit=int(extra["n_fit"]),
            control=control,
        )
    except (CacheError, KeyError, ValueError, TypeError, OSError):
        return None


def save_components(
    analysis: Any, key: dict[str, Any], options: DecomposeOptions, comps: Components
) -> None:
    """Write ``comps`` as its cache part (silently skipped on a read-only cache)."""
    s = analysis.settings
    tensors = {"directions": comps.directions, "strength": comps.strength}
    if comps.token_weights is not None:
        tensors["token_weights"] = comps.token_weights
    extra = _extra(options, analysis.meta, comps.matrix)
    extra.update(fvu=comps.fvu, n_rows=comps.n_rows, n_fit=comps.n_fit)
    name = part_name(options, comps.matrix, comps.layer, comps.control)
    with contextlib.suppress(OSError, CacheError):
        cache_parts.save_part(s.cache_dir, analysis.meta, s.processing, key, name, tensors, extra)


def fit_components(
    analysis: Any,
    options: DecomposeOptions,
    matrix: str,
    layer: int,
    control: bool = False,
    progress: Progress = quiet,
) -> Components:
    """Fit ``options.method`` to ``matrix`` at ``layer`` now (no cache)."""
    check_method(options.method, matrix, layer, analysis.meta.n_layers)
    if options.method == "svd":
        raise SpecError("The SVD is the cached decomposition; ask core.query.directions for it.")
    X, w, _ = rows_and_weights(analysis, matrix, layer, options.weighted)
    W_U = analysis.W_U.float()
    with torch.no_grad():
        if options.method == "dictionary":
            return dictionary(X, W_U, options, matrix, layer, w, control, progress)[0]
        if options.method == "nmf":
            return nmf(X, W_U, options, matrix, layer, control, progress)
        return ica(X, W_U, options, matrix, layer, w, control, progress)[0]


def components(
    analysis: Any,
    key: dict[str, Any],
    options: DecomposeOptions,
    matrix: str,
    layer: int,
    control: bool = False,
    progress: Progress = quiet,
) -> Components:
    """The build of ``options`` for ``matrix`` at ``layer``: from the cache, else fitted
    now (reporting to ``progress``) and written when the analysis persists.

    Raises:
        SpecError: the method does not read that matrix, or the layer is out of range.
    """
    check_method(options.method, matrix, layer, analysis.meta.n_layers)
    hit = load_components(analysis, key, options, matrix, layer, control)
    if hit is not None:
        return hit
    comps = fit_components(analysis, options, matrix, layer, control, progress)
    if getattr(analysis, "persist", False):
        save_components(analysis, key, options, comps)
    return comps
