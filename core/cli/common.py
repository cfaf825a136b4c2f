"""What every subcommand shares: the common options, the settings they describe,
the progress bar, and the one error type for bad arguments.

This package is the only place in ``core`` that reads the command line.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.model import embedded
from core.settings import DEFAULT_PROJECTION, PROJECTIONS, Settings


class ArgError(Exception):
    """Raised instead of argparse's own exit so every bad argument reads the same."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ArgError(message[0].upper() + message[1:] + ("" if message.endswith(".") else "."))


def common_parser() -> _Parser:
    """Options every model command takes: model, processing, device, cache, json."""
    p = _Parser(add_help=False)
    p.add_argument(
        "--model",
        default="default",
        help="embedded model (default = demo-gpt2, smollm2-135m), local checkpoint dir, or HF id",
    )
    p.add_argument("--processing", choices=("raw", "post"), default="post")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--projection",
        choices=PROJECTIONS,
        default=DEFAULT_PROJECTION,
        help=f"how directions are read as tokens (default {DEFAULT_PROJECTION}): raw v @ W_U, "
        "centred (W_U minus its mean column), standardized (each token's centred logit "
        "over its std under random directions); README, Projection",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: ./cache)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    return p


#: Longer than any hub id or sane path: a longer --model is a paste accident, refused
#: before it reaches the file system (where it fails as "File name too long").
MAX_MODEL_SPEC = 1024


def check_common(args: argparse.Namespace) -> None:
    """Refuse bad common options before any work starts: an over-long ``--model``, a
    ``--cache-dir`` that cannot be written.
    """
    model = getattr(args, "model", None)
    if model is not None and len(model) > MAX_MODEL_SPEC:
        raise ArgError(
            f"--model is {len(model):,} characters long; give a Hugging Face id or a "
            f"checkpoint path of at most {MAX_MODEL_SPEC:,} characters."
        )
    if model is not None and getattr(args, "cache_dir", None) is not None:
        writable_dir(args.cache_dir, "--cache-dir")


def writable_dir(path: Path, flag: str) -> Path:
    """``path`` as a directory this process can write (created if missing), else
    :class:`ArgError` naming ``flag``.
    """
    try:
        if path.exists() and not path.is_dir():
            raise ArgError(f"{flag} {path} is a file, not a folder; give a folder.")
        path.mkdir(parents=True, exist_ok=True)
        # Permission bits say nothing for root or on /proc; a real write does.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ArgError(
            f"Cannot write to {flag} {_short(path)} ({exc.strerror or exc}); "
            "give a writable folder."
        ) from exc
    return path


def writable_file(path: Path, flag: str) -> Path:
    """``path`` as a file this process can create in an existing folder, else
    :class:`ArgError` naming ``flag``.
    """
    if path.is_dir():
        raise ArgError(f"{flag} {path} is a folder; give a file name inside it.")
    if not path.parent.is_dir():
        raise ArgError(f"{flag}: the folder {path.parent} does not exist; create it first.")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise ArgError(
            f"Cannot write to {flag} {path} ({exc.strerror or exc}); give a writable folder."
        ) from exc
    return path


def bounded(flag: str, value: float, low: float, high: float) -> None:
    """:class:`ArgError` unless ``low <= value <= high`` (NaN is refused too)."""
    if not (math.isfinite(value) and low <= value <= high):
        raise ArgError(f"{flag} must be between {low:g} and {high:g}, not {value:g}.")


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else text[:117] + "..."


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """The :class:`Settings` the common options describe."""
    model = embedded.spec_name(args.model)
    fields: dict[str, Any] = dict(model=model, processing=args.processing, device=args.device)
    fields["projection"] = getattr(args, "projection", DEFAULT_PROJECTION)
    if args.cache_dir is not None:
        fields["cache_dir"] = args.cache_dir
    fields.update(extra)
    return Settings(**fields)


# Once the command has failed, a background fill still writes the cache but prints no
# more progress: the error stays the last line of stderr.
_STDERR = threading.Lock()
_FAILED = threading.Event()


def start_command() -> None:
    """Let progress print again (a process that runs :func:`core.cli.main.main` twice)."""
    _FAILED.clear()


def report_error(message: str) -> None:
    """Print ``error: message`` on stderr as its last line (see :func:`log_progress`)."""
    with _STDERR:
        _FAILED.set()
        print(f"error: {message}", file=sys.stderr, flush=True)


def log_progress() -> Callable[[float, str], None]:
    """A progress callback printing one line on stderr per stage (each new message), with
    the seconds since it was made: what a log or a pipe shows where a bar cannot draw.
    """
    t0 = time.perf_counter()
    last: list[str] = []

    def update(frac: float, msg: str) -> None:
        if last and last[0] == msg:
            return
        last[:] = [msg]
        with _STDERR:
            if not _FAILED.is_set():
                print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    return update


def tqdm_progress() -> Callable[[float, str], None]:
    """A progress callback drawing a tqdm bar on stderr, or log lines when stderr is not
    a terminal (:func:`log_progress`).
    """
    if not sys.stderr.isatty():
        return log_progress()
    from tqdm import tqdm

    bar = tqdm(
        total=100,
        file=sys.stderr,
        leave=False,
        bar_format="{bar:20}| {desc}",
    )

    def update(frac: float, msg: str) -> None:
        bar.set_description_str(msg)
        bar.n = int(frac * 100)
        bar.refresh()
        if frac >= 1.0:
            bar.close()

    return update


def open_from_args(args: argparse.Namespace, background: bool = False, **extra: Any) -> Any:
    """Open the analysis the common options name, with a progress bar on stderr.

    With ``background`` a missing cache entry is built as far as the first directions,
    the command answers, and the process writes the rest of the entry before it exits
    (one progress line per stage on stderr).
    """
    from core.analysis import open_analysis

    settings = settings_from_args(args, **extra)
    # One question per process: read only the kinds the answer needs.
    return open_analysis(settings, tqdm_progress(), background, log_progress(), lazy=True)


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """A plain aligned table on stdout."""
    if not rows:
        print("(no rows)")
        return
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    width = {c: min(w, 80) for c, w in width.items()}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, ""))[: width[c]].ljust(width[c]) for c in cols))


def check_reference(paths: list[Path] | None) -> None:
    """Refuse a ``--reference`` file that is not there, before any model is loaded."""
    for f in paths or ():
        if not f.is_file():
            raise ArgError(f"No reference file {f}; give a text file to --reference.")


def reference_windows(tokenizer: Any, paths: list[Path] | None, windows: int) -> Any:
    """Token windows ``[windows, 64]`` of the ``--reference`` files, or of the model's
    held-out text when none is given (what the experiments measure loss on).
    """
    from core.edit.prompts import reference_ids, reference_texts

    texts = (
        [f.read_text(encoding="utf-8", errors="replace") for f in paths]
        if paths
        else reference_texts()
    )
    return reference_ids(tokenizer, texts, seq_len=64, n_seqs=windows)
