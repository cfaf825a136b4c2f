"""``label``, ``label-eval`` and ``label-export``: label directions, score a labeller, export labels.

The LLM labeller's endpoint comes from flags, else the environment (read here, never in
``core`` proper): ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``SVDLENS_LLM_MODEL``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from core.cli.common import (
    ArgError,
    bounded,
    open_from_args,
    tqdm_progress,
    writable_file,
)
from core.settings import DEFAULT_CACHE_DIR, MATRIX_KINDS


def _llm_settings(args: argparse.Namespace) -> Any:
    from core.label.llm import LLMSettings

    base = args.llm_base_url or os.environ.get("OPENAI_BASE_URL")
    model = args.llm_model or os.environ.get("SVDLENS_LLM_MODEL")
    if not base or not model:
        raise ArgError(
            "The LLM labeller needs an endpoint and a model: pass --llm-base-url and "
            "--llm-model, or set OPENAI_BASE_URL and SVDLENS_LLM_MODEL."
        )
    return LLMSettings(
        base_url=base,
        model=model,
        api_key=os.environ.get(args.llm_key_env) or None,
        timeout=args.llm_timeout,
        requests_per_minute=args.llm_rpm,
        price_per_1k_prompt=args.llm_price_prompt,
        price_per_1k_completion=args.llm_price_completion,
    )


#: ``--ends``: which ends of each direction to label.
ENDS_CHOICES: dict[str, tuple[str, ...]] = {
    "top": ("top",),
    "bottom": ("bottom",),
    "both": ("top", "bottom"),
}
#: Directions per component and tokens per direction a sweep may ask for: beyond every
#: rank and every useful prompt, and small enough that a typo cannot run for hours.
MAX_N = 4096
MAX_K = 100


def _concepts(path: Path | None) -> tuple[str, ...] | None:
    """The concept list at ``path`` (``None``: the labeller's own), read before any loading."""
    if path is None:
        return None
    from core.label.concepts import load_concepts

    try:
        concepts = load_concepts(path)
    except OSError as exc:
        raise ArgError(
            f"Cannot read the concept file {path} ({exc.strerror or exc}); give a text file."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ArgError(
            f"The concept file {path} is not UTF-8 text; give one concept per line."
        ) from exc
    if not concepts:
        raise ArgError(f"The concept file {path} is empty; give one per line.")
    return concepts


def _label(args: argparse.Namespace) -> Any:
    from core.label.sweep import (
        check_ends,
        label_llm,
        label_offline,
        layer_spans,
        offline_labeller,
        parse_layers,
        store_labels,
        token_sets,
    )

    bounded("--n", args.n, 1, MAX_N)
    bounded("--k", args.k, 2, MAX_K)
    layer_spans(args.layers)
    llm_settings = _llm_settings(args) if args.labeller == "llm" else None
    concepts = _concepts(args.concepts) if args.labeller == "offline" else None
    a = open_from_args(args)
    layers = parse_layers(args.layers, 1 if args.matrix == "embed" else a.meta.n_layers)
    heads = None if args.head is None else [args.head]
    ends = check_ends(ENDS_CHOICES[args.ends])
    groups = [(c, e) for c in ([False, True] if args.control else [False]) for e in ends]
    items = {
        (c, e): list(token_sets(a, args.matrix, layers, args.n, args.k, heads, c, e))
        for c, e in groups
    }
    results = []
    if args.labeller == "offline":
        offline = offline_labeller(a, concepts=concepts)
        for c, e in groups:
            results += label_offline(offline, items[c, e], args.matrix, c, e)
    else:
        from core.label.llm import open_llm_labeller

        assert llm_settings is not None
        lab = open_llm_labeller(llm_settings, a.settings.cache_dir)
        est = lab.estimate([toks for g in groups for *_, toks in items[g]])
        print(f"LLM sweep estimate: {est.to_json()}", file=sys.stderr)
        if args.estimate_only:
            return {"estimate": est.to_json()}
        for c, e in groups:
            results += label_llm(lab, items[c, e], args.matrix, c, tqdm_progress(), e)
    if not args.no_store:
        store_labels(a, results)
    if args.json:
        return [r.to_json() for r in results]
    return [
        {
            "layer": r.layer,
            "head": "" if r.head is None else r.head,
            "index": r.index,
            "end": r.end,
            "control": "yes" if r.control else "",
            "interp": "yes" if r.interpretable else "no",
            "score": "" if r.score is None else f"{r.score:.2f}",
            "label": r.label,
            "tokens": " ".join(r.tokens[:10]),
        }
        for r in results
    ]


def _label_eval(args: argparse.Namespace) -> Any:
    from core.label.evaluate import evaluate_scores, offline_scores, read_label_file
    from core.label.offline import OfflineLabeller, OfflineParams, load_embedder

    if not math.isfinite(args.threshold):
        raise ArgError(
            f"--threshold must be a number of standard deviations, not {args.threshold}."
        )
    params = OfflineParams(threshold_z=args.threshold)
    files = {str(p): read_label_file(p) for p in args.data}
    kinds = {s.interpretable for sets in files.values() for s in sets}
    if len(kinds) < 2:
        which = "interpretable" if True in kinds else "uninterpretable"
        raise ArgError(
            f"Every direction in --data is {which} by the reference, so AUC is undefined; "
            "give files with both kinds."
        )
    emb = load_embedder("cpu")
    per: dict[str, Any] = {}
    all_sets: list[Any] = []
    all_scores: list[Any] = []
    for name, sets in files.items():
        _, scores = offline_scores(sets, lambda vocab: OfflineLabeller(emb, vocab, params))
        per[name] = evaluate_scores(sets, scores, params.threshold_z).to_json()
        all_sets += sets
        all_scores += scores
    out = evaluate_scores(all_sets, all_scores, params.threshold_z).to_json()
    if len(files) > 1:
        out["files"] = per
    return out


def _label_export(args: argparse.Namespace) -> Any:
    from core.label.store import LabelStore, labels_path

    writable_file(args.out, "--out")
    cache = args.cache_dir or DEFAULT_CACHE_DIR
    if not labels_path(cache).exists():
        raise ArgError(f"No labels under {cache}; label some directions first.")
    with LabelStore.in_cache(cache) as store:
        text = store.export_csv(
            args.out, model=args.model_name, labeller=args.labeller, search=args.search
        )
    return {"rows": text.count("\n") - 1, "out": str(args.out)}


def _label_stats(args: argparse.Namespace) -> Any:
    from core.label.calibrate import calibrated_fractions
    from core.label.store import LabelStore, labels_path, reading

    if not 0.0 < args.rate < 0.5:
        raise ArgError(f"--rate is a share between 0 and 0.5, such as 0.05, not {args.rate}.")
    a = open_from_args(args)
    cache = a.settings.cache_dir
    if not labels_path(cache).exists():
        raise ArgError(f"No labels under {cache}; run python -m core label --control first.")
    with LabelStore.in_cache(cache) as store:
        records = store.query(
            model=a.meta.name, weights_hash=a.meta.weights_hash, **reading(a.settings)
        )
    rows = calibrated_fractions(records, args.by_index, args.rate)
    if not rows:
        raise ArgError(
            f"No scored labels of {a.meta.name}'s random control to calibrate on; run "
            "python -m core label --control (the offline labeller) first."
        )
    return [r.to_json() for r in rows]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``label``, ``label-eval``, ``label-export`` and ``label-stats``."""
    p = subparsers.add_parser(
        "label", parents=[common], help="label directions as interpretable or not"
    )
    p.add_argument("--matrix", required=True, choices=MATRIX_KINDS)
    p.add_argument("--layers", default="all", help="'all', '3', '0,2,5' or '4-7'")
    p.add_argument("--head", type=int, default=None, help="one head (ov/qk; default all)")
    p.add_argument("--n", type=int, default=30, help="directions per component")
    p.add_argument("--k", type=int, default=15, help="tokens of an end shown to the labeller")
    p.add_argument(
        "--ends",
        choices=tuple(ENDS_CHOICES),
        default="both",
        help="which ends of each direction to label (default both: the sign rule only "
        "decides which end is called top)",
    )
    p.add_argument("--labeller", choices=("offline", "llm"), default="offline")
    p.add_argument("--control", action="store_true", help="also label the random control")
    p.add_argument("--concepts", type=Path, default=None, help="concept list, one per line")
    p.add_argument("--no-store", action="store_true", help="do not write labels.sqlite")
    p.add_argument("--llm-base-url", default=None, help="default: $OPENAI_BASE_URL")
    p.add_argument("--llm-model", default=None, help="default: $SVDLENS_LLM_MODEL")
    p.add_argument("--llm-key-env", default="OPENAI_API_KEY", help="env var holding the key")
    p.add_argument("--llm-timeout", type=float, default=30.0)
    p.add_argument("--llm-rpm", type=float, default=60.0, help="requests per minute")
    p.add_argument("--llm-price-prompt", type=float, default=0.0, help="per 1k prompt tokens")
    p.add_argument("--llm-price-completion", type=float, default=0.0)
    p.add_argument("--estimate-only", action="store_true", help="LLM: print the estimate only")
    p.set_defaults(func=_label)

    p = subparsers.add_parser(
        "label-eval", help="score the offline labeller against GPT-3 label files"
    )
    p.add_argument("--data", type=Path, nargs="+", required=True, help="label-set JSON files")
    p.add_argument("--threshold", type=float, default=2.0, help="z-score for 'interpretable'")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=_label_eval)

    p = subparsers.add_parser("label-export", help="write stored labels as CSV")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.add_argument("--model-name", default=None, help="only this model")
    p.add_argument("--labeller", default=None, help="only this labeller (manual/offline/llm)")
    p.add_argument("--search", default=None, help="label or token substring")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_label_export)

    p = subparsers.add_parser(
        "label-stats",
        parents=[common],
        help="interpretable fractions with the cut calibrated on the random control",
    )
    p.add_argument("--rate", type=float, default=0.05, help="control called interpretable")
    p.add_argument("--by-index", action="store_true", help="per singular-vector index")
    p.set_defaults(func=_label_stats)
