"""Knockout results on disk: a derived part of the model's cache entry
(:func:`core.cache.parts.save_part`: safetensors + JSON), named by a digest of the
options, the reference tokens and the verdicts, so a new label means a new run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from core.analysis import Analysis, settings_key
from core.cache import parts as cache_parts
from core.errors import CacheError
from core.experiments.knockout import KnockoutOptions, KnockoutResult, knockout
from core.experiments.verdicts import Key, components, label_missing, stored_verdicts
from core.progress import Progress, quiet

_TENSORS = ("draw", "n_deleted", "sigma_sum", "loss", "kl", "dlogprob_own", "n_own",
            "dlogprob_target")  # fmt: skip


def _digest(ids: Tensor, verdicts: Mapping[Key, bool], options: KnockoutOptions) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(options.to_json(), sort_keys=True).encode())
    h.update(ids.to(torch.int64).contiguous().numpy().tobytes())
    h.update(json.dumps(sorted([list(k), v] for k, v in verdicts.items())).encode())
    return h.hexdigest()[:20]


def _save(analysis: Analysis, digest: str, res: KnockoutResult) -> None:
    if not analysis.persist or analysis.filling:
        return
    s = analysis.settings
    extra = {
        "digest": digest,
        "names": list(res.names),
        "layers": list(res.layers),
        "deleted": [list(d) for d in res.deleted],
        **{
            k: getattr(res, k)
            for k in ("loss_orig", "n_target", "n_labelled", "n_fill", "n_tokens")
        },  # fmt: skip
    }
    tensors = {k: getattr(res, k) for k in _TENSORS}
    with contextlib.suppress(OSError, CacheError):  # a read-only cache: computed next time
        cache_parts.save_part(
            s.cache_dir, analysis.meta, s.processing, settings_key(s), f"knockout-{digest}",
            tensors, extra,
        )  # fmt: skip


def _load(analysis: Analysis, digest: str, options: KnockoutOptions) -> KnockoutResult | None:
    s = analysis.settings
    try:
        extra, t = cache_parts.load_part(
            s.cache_dir, analysis.meta, s.processing, settings_key(s), f"knockout-{digest}"
        )
        if extra.get("digest") != digest:
            return None
        scalars = ("loss_orig", "n_target", "n_labelled", "n_fill", "n_tokens")
        fields: dict[str, Any] = {**{k: t[k] for k in _TENSORS}, **{k: extra[k] for k in scalars}}
        return KnockoutResult(
            options=options,
            layers=tuple(extra["layers"]),
            names=tuple(extra["names"]),
            deleted=tuple(tuple(d) for d in extra["deleted"]),
            **fields,
        )
    except (CacheError, KeyError, ValueError, TypeError, OSError):
        return None


def cached_knockout(
    analysis: Analysis,
    ids: Int[Tensor, "n t"],
    options: KnockoutOptions = KnockoutOptions(),
    progress: Progress = quiet,
    label: bool = True,
) -> tuple[KnockoutResult, bool]:
    """:func:`knockout` with the stored verdicts (offline: labelling components that
    have none first, when ``label``), read from the cache when the same options, text
    and verdicts ran before. Returns the result and whether it came from the cache.
    """
    layers = list(range(analysis.meta.n_layers)) if options.layers is None else options.layers
    components(analysis, options.kinds, layers)  # refuse bad matrices before labelling
    if label and options.labeller == "offline":
        label_missing(analysis, options.kinds, layers, options.n_label, progress)
    verdicts = stored_verdicts(analysis, options.kinds, layers, options.labeller)
    digest = _digest(ids, verdicts, options)
    hit = _load(analysis, digest, options)
    if hit is not None:
        progress(1.0, "knockout read from the cache")
        return hit, True
    res = knockout(analysis, ids, verdicts, options, progress)
    _save(analysis, digest, res)
    return res, False
