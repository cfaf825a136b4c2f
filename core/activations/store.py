"""Examples in the cache: a derived part of the model's entry (safetensors + JSON through
:func:`core.cache.parts.save_part`), named by a hash of the build's key (corpus digest,
split, token budget, ...), so another corpus or budget is another part and a rewritten
entry (other weights, other settings) drops them all.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from core.activations.corpus import Corpus
from core.activations.examples import ExampleOptions, Examples, SideExamples, build_examples
from core.analysis import Analysis, settings_key
from core.cache import parts as cache_parts
from core.errors import CacheError
from core.progress import Progress, quiet

_FIELDS = (
    "top_doc",
    "top_pos",
    "top_val",
    "bottom_doc",
    "bottom_pos",
    "bottom_val",
    "mean",
    "std",
    "hist",
    "hist_lo",
    "hist_hi",
    "strong",
)


def part_name(key: dict[str, Any]) -> str:
    """The cache part that holds the examples built with ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return f"examples-{digest[:16]}"


def save_examples(analysis: Analysis, examples: Examples) -> None:
    """Write ``examples`` as a part of the analysis's cache entry."""
    s = analysis.settings
    tensors = {}
    sides = {}
    for name, e in examples.sides.items():
        for f in _FIELDS:
            t = getattr(e, f)
            tensors[f"{name}.{f}"] = t.to(torch.int32) if f == "hist" else t
        sides[name] = {
            "kind": e.kind,
            "side": e.side,
            "components": [list(c) for c in e.components],
            "rank": e.rank,
        }
    extra = {
        "key": examples.key,
        "n_tokens": examples.n_tokens,
        "context": examples.context,
        "seconds": examples.seconds,
        "sides": sides,
    }
    cache_parts.save_part(
        s.cache_dir,
        analysis.meta,
        s.processing,
        settings_key(s),
        part_name(examples.key),
        tensors,
        extra,
    )


def load_examples(analysis: Analysis, key: dict[str, Any]) -> Examples:
    """The examples built with ``key`` for this analysis's entry.

    Raises:
        CacheError: none were built (or they are damaged, or from another key).
    """
    s = analysis.settings
    extra, t = cache_parts.load_part(
        s.cache_dir, analysis.meta, s.processing, settings_key(s), part_name(key)
    )
    if extra.get("key") != key:
        raise CacheError("The cached examples were built with other options; build them again.")
    try:
        sides = {
            name: SideExamples(
                kind=str(info["kind"]),
                side=str(info["side"]),
                components=tuple(
                    (int(c[0]), None if c[1] is None else int(c[1])) for c in info["components"]
                ),
                rank=int(info["rank"]),
                **{f: t[f"{name}.{f}"] for f in _FIELDS},
            )
            for name, info in extra["sides"].items()
        }
        return Examples(key, int(extra["n_tokens"]), sides, int(extra["context"]))
    except Exception as exc:  # any content that does not fit
        raise CacheError(f"The cached examples do not parse ({exc}); build them again.") from exc


def get_examples(
    analysis: Analysis,
    corpus: Corpus,
    options: ExampleOptions | None = None,
    progress: Progress = quiet,
    build: bool = True,
) -> Examples | None:
    """The examples for ``options`` (defaults when ``None``): from the cache, else built
    now and written (when ``build``; else ``None``).
    """
    opts = options if options is not None else ExampleOptions()
    key = opts.key(corpus)
    try:
        return load_examples(analysis, key)
    except CacheError:
        if not build:
            return None
    built = build_examples(analysis, corpus, opts, progress)
    if analysis.persist:
        save_examples(analysis, built)
    return built
