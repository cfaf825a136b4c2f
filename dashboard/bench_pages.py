"""Render time of every dashboard page from a warm cache, headless via AppTest.

``python -m dashboard.bench_pages --shape gpt2-small --json`` writes a random checkpoint
of that shape (or uses the embedded demo model for ``demo``), opens every page once to
load the model and build its cache entry (not timed, reported as ``warm_s``), then times
``repeat`` reruns of each page and prints one JSON object::

    {"shape": ..., "page_ms": {page: p50}, "page_max_ms": {page: max},
     "page_new_ms": {page: p50}, "page_new_max_ms": {page: max}, "warm_s": ...}

``page_ms``: the same view rerun (Streamlit's caches hit). ``page_new_ms``: the page
opened on a component it has not shown yet (its caches miss, the disk cache is warm).

``python -m core bench`` runs this as a subprocess: core never imports streamlit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from dashboard.markup import shown
from dashboard.registry import DASHBOARD, PAGES, Page

#: The router; every page of :data:`dashboard.registry.PAGES` is timed through it.
APP = DASHBOARD / "app.py"
#: Seconds one AppTest run may take. The warm-up loads the model and may build its cache
#: entry (minutes for gpt2-small on a shared CPU); a warm rerun should be far below this.
WARM_TIMEOUT = 3600.0
RUN_TIMEOUT = 300.0
#: Special token of the synthetic tokenizer; it takes the last id, as in GPT-2, because
#: ``shape_config`` sets ``bos_token_id = eos_token_id = vocab - 1``.
EOS = "<|endoftext|>"


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(at: Any, page: Page, timeout: float, component: int | None = None) -> float:
    """Switch to ``page``, run the script once; wall seconds. Raises if the page failed.

    With ``component``, the page is first shown (untimed) and the sidebar then set to
    that component (:func:`_select`), so the timed run is the click onto it."""
    at.switch_page(page.script)
    if component is not None:
        at.run(timeout=timeout)
        _select(at, component)
    t = time.perf_counter()
    at.run(timeout=timeout)
    seconds = time.perf_counter() - t
    # A page that raised or showed an error stopped early: its time would look good
    # and mean nothing.
    problems = [e.value for e in at.exception] + [shown(e.value) for e in at.error]
    if problems:
        raise RuntimeError(f"The {page.key} page failed: {problems[0]}")
    return seconds


def _select(at: Any, n: int) -> None:
    """Pick the ``n``-th (layer, head) in the sidebar (wrapping), as a user clicking on."""
    layer_box = at.selectbox(key="w.layer")
    heads = [w for w in at.sidebar.selectbox if w.key == "w.head"]
    n_heads = len(heads[0].options) if heads else 1
    n_layers = len(layer_box.options)
    layer, head = (n // n_heads) % n_layers, n % n_heads
    layer_box.set_value(layer_box.options[layer] if isinstance(layer_box.value, str) else layer)
    if heads:
        box = heads[0]
        box.set_value(box.options[head] if isinstance(box.value, str) else head)


def measure(
    model: str, cache_dir: Path, repeat: int = 5
) -> tuple[float, dict[str, dict[str, float]]]:
    """Render time of every page of the app, from a warm cache, in one AppTest session.

    Args:
        model: model spec as the dashboard takes it (``default``, a checkpoint directory).
        cache_dir: the SVD cache root; the entry is built there by the (untimed) warm-up
            when missing.
        repeat: timed reruns per page, after the warm-up run of every page.

    Returns:
        The warm-up's seconds, and ``{page: {"p50_ms", "max_ms", "new_p50_ms",
        "new_max_ms"}}`` for every page of the registry, keyed by :attr:`Page.key`;
        ``new_*`` time the page opened on a component it has not shown yet.

    Raises:
        RuntimeError: a page raised or showed an error (the message names the page).
    """
    from streamlit.testing.v1 import AppTest

    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}.")
    with _environ(SVDLENS_DEFAULT_MODEL=model, SVDLENS_CACHE_DIR=str(cache_dir)):
        at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
        t = time.perf_counter()
        # Every page once: loads the model, builds the cache entry if missing and fills
        # the per-page caches, so the timed runs below see what a returning user sees.
        for page in PAGES:
            _run(at, page, WARM_TIMEOUT)
        # An empty cache starts a background fill: the timed runs are of a whole entry.
        from dashboard import config, loaders

        spec, cdir = config.default_model(), str(config.cache_dir())
        slot = loaders._slot(spec, "post", cdir)
        if slot.value is not None and slot.value.fill is not None:
            slot.value.fill.wait()
        # The settled index's null warm-up writes parts into the entry: waited for, so
        # the timed runs do not share the cores with it and nothing writes into the
        # cache directory while its caller removes it.
        warmer = loaders._search_index(spec, "post", cdir, -1).memo.get("warmer")
        if warmer is not None:
            warmer.wait()
        warm_s = time.perf_counter() - t
        out: dict[str, dict[str, float]] = {}
        for page in PAGES:
            ms = [1e3 * _run(at, page, RUN_TIMEOUT) for _ in range(repeat)]
            out[page.key] = {"p50_ms": statistics.median(ms), "max_ms": max(ms)}
        # Then a component the page has not shown yet, each time: what stepping through
        # heads costs (the page's own caches miss; the cache entry on disk is warm).
        # Small models have fewer components than pages x repeat, so some of these wrap.
        for i, page in enumerate(PAGES):
            new = [1e3 * _run(at, page, RUN_TIMEOUT, 1 + i * repeat + r) for r in range(repeat)]
            out[page.key].update(new_p50_ms=statistics.median(new), new_max_ms=max(new))
    return warm_s, out


def synthetic_tokenizer(vocab_size: int) -> Any:
    """A fast word-level tokenizer over ``synthetic_vocab(vocab_size)`` (GPT-2 style ids).

    Words split at whitespace, a leading space kept with its word (shown as ``Ġ``, as in
    GPT-2), so every vocabulary entry encodes to its own id and decodes back exactly.
    The last entry is replaced by ``<|endoftext|>`` (bos, eos and unknown).
    """
    from core.model.random import synthetic_vocab
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = synthetic_vocab(vocab_size)[:-1]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    pieces = ["".join(p for p, _ in byte_level.pre_tokenize_str(w)) for w in words]
    tok = Tokenizer(models.WordLevel({p: i for i, p in enumerate([*pieces, EOS])}, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r" ?\S+"), behavior="isolated"), byte_level]
    )
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS
    )


def write_checkpoint(shape: str, out_dir: Path, seed: int = 0) -> Path:
    """A random-init Hugging Face GPT-2 checkpoint of a benchmark shape in ``out_dir``.

    Weights (safetensors) from ``core.model.random.shape_config(shape)`` and the
    :func:`synthetic_tokenizer`, both via ``save_pretrained``, so the dashboard opens it
    like a user's local checkpoint. ``demo`` returns the embedded demo model instead.
    """
    import torch
    from core.model.random import shape_config
    from core.settings import DEFAULT_MODEL_DIR
    from transformers import GPT2LMHeadModel

    if shape == "demo":
        return DEFAULT_MODEL_DIR
    cfg = shape_config(shape)
    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(cfg).eval().save_pretrained(out_dir, safe_serialization=True)
    synthetic_tokenizer(cfg.vocab_size).save_pretrained(out_dir)
    return out_dir


# ------------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        _fail(message[0].upper() + message[1:].rstrip(".") + ".", 2)


def _fail(sentence: str, code: int) -> NoReturn:
    print(f"error: {' '.join(sentence.split())}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """``python -m dashboard.bench_pages``; prints one JSON object (see the module doc)."""
    from core.model.random import SHAPES
    from core.settings import DEFAULT_MODEL_DIR

    p = _Parser(prog="python -m dashboard.bench_pages", description="Time every dashboard page.")
    p.add_argument("--shape", required=True, help=", ".join(s for s in SHAPES if s != "tiny"))
    p.add_argument("--repeat", type=int, default=5, help="timed reruns per page (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch/BLAS threads")
    p.add_argument("--json", action="store_true", help="print JSON (the only output)")
    args = p.parse_args(argv)
    if args.shape not in SHAPES:
        _fail(f"Unknown shape {args.shape!r}; use one of {', '.join(SHAPES)}.", 2)
    if args.repeat < 1:
        _fail(f"--repeat must be at least 1, not {args.repeat}.", 2)
    if args.threads is not None and args.threads < 1:
        _fail(f"--threads must be at least 1, not {args.threads}.", 2)
    if args.shape == "demo" and not (DEFAULT_MODEL_DIR / "config.json").is_file():
        _fail(f"The demo model is missing from {DEFAULT_MODEL_DIR}; restore models/.", 2)
    # Local files only: a checkpoint we wrote, never the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    if args.threads:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, so the limit reaches it)
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="svdlens-pages-") as tmp:
        try:
            # stdout carries only the JSON: anything a library prints goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                ckpt = write_checkpoint(args.shape, Path(tmp) / args.shape)
                model = "default" if args.shape == "demo" else str(ckpt)
                warm_s, times = measure(model, Path(tmp) / "cache", args.repeat)
        except Exception as exc:  # one line, last on stderr, for core bench to quote
            # Ours (a page failed) already name the page; others need their type.
            _fail(str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}", 1)
    result = {
        "shape": args.shape,
        "page_ms": {k: round(v["p50_ms"], 2) for k, v in times.items()},
        "page_max_ms": {k: round(v["max_ms"], 2) for k, v in times.items()},
        "page_new_ms": {k: round(v["new_p50_ms"], 2) for k, v in times.items()},
        "page_new_max_ms": {k: round(v["new_max_ms"], 2) for k, v in times.items()},
        "warm_s": round(warm_s, 3),
        "repeat": args.repeat,
        "threads": torch.get_num_threads(),
        "load_avg": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
