"""The dashboard's configuration, read at the edge: the environment variables that say
which model opens first, where checkpoints and the cache live, the examples' token budget,
whether hub ids may be opened, whether search nulls are computed ahead of queries, and the
guard every model spec passes before a load.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import SpecError
from core.model import embedded
from core.settings import DEFAULT_CACHE_DIR, DEFAULT_MODEL_DIR, REPO_ROOT


def default_model() -> str:
    """The model spec the app opens with: ``$SVDLENS_DEFAULT_MODEL`` or core's ``default``.

    An embedded model that is not built (its install-time fetch failed) falls back to
    ``default``, the demo model; the picker still lists it with how to build it.
    """
    spec = embedded.spec_name(os.environ.get("SVDLENS_DEFAULT_MODEL", "").strip() or "default")
    entry = embedded.lookup(spec)
    return "default" if entry is not None and not entry.built else spec


def models_dir() -> Path:
    """Folder of local checkpoints offered in the model picker (``$SVDLENS_MODELS_DIR``)."""
    p = Path(os.environ.get("SVDLENS_MODELS_DIR", "").strip() or "models")
    return p if p.is_absolute() else REPO_ROOT / p


def cache_dir() -> Path:
    """Root of the SVD cache (``$SVDLENS_CACHE_DIR``, else core's default ``cache/``)."""
    p = os.environ.get("SVDLENS_CACHE_DIR", "").strip()
    return Path(p) if p else DEFAULT_CACHE_DIR


def example_tokens() -> int:
    """Corpus tokens read to build dataset examples (``$SVDLENS_EXAMPLE_TOKENS``, else
    core's default, so the dashboard and ``python -m core examples`` share a build)."""
    from core.activations import DEFAULT_TOKENS

    try:
        return max(1, int(os.environ.get("SVDLENS_EXAMPLE_TOKENS", "").strip() or DEFAULT_TOKENS))
    except ValueError:
        return DEFAULT_TOKENS


def local_models() -> list[str]:
    """Checkpoint directories (with a ``config.json``) directly under :func:`models_dir`."""
    root = models_dir()
    if not root.is_dir():
        return []
    # Named as a typed path or a URL names them (embedded.spec_name), so the picker shows
    # the folder the session already has open rather than a second entry for it.
    return sorted(
        embedded.spec_name(str(d)) for d in root.iterdir() if (d / "config.json").is_file()
    )


def checkpoint_series() -> list[str]:
    """Folders directly under :func:`models_dir` that hold two or more checkpoint folders
    (a training run's series, e.g. from ``make demo-checkpoints``), for the Compare page."""
    root = models_dir()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and not (d / "config.json").is_file():
            n = sum(1 for c in d.iterdir() if (c / "config.json").is_file())
            if n >= 2:
                out.append(str(d))
    return out


def allow_hub() -> bool:
    """Whether visitors may open Hugging Face hub ids (``$SVDLENS_ALLOW_HUB=1``; off by
    default: a shared link could otherwise make the server download any model)."""
    return os.environ.get("SVDLENS_ALLOW_HUB", "").strip().lower() in ("1", "true", "yes")


def check_model(spec: str) -> None:
    """Refuse a model spec the dashboard must not open.

    The dashboard opens the embedded models (:mod:`core.model.embedded`), checkpoints
    under :func:`models_dir` (or the repository's ``models/``), the operator's
    :func:`default_model`, and hub ids only when :func:`allow_hub`. The CLI has no such
    limit.

    Raises:
        SpecError: one sentence naming what is allowed (whether a path exists is not
            revealed).
    """
    if spec == default_model() or embedded.lookup(spec) is not None:
        return
    roots = [DEFAULT_MODEL_DIR.parent, models_dir()]
    try:
        path = Path(spec).expanduser()
        # A hub id is "owner/name": anything else with a slash, or a "..", is a path.
        looks_like_path = (
            path.is_absolute()
            or spec.startswith((".", "~"))
            or ".." in path.parts
            or spec.count("/") > 1
            or "\\" in spec
        )
        if not (looks_like_path or path.exists()):
            if allow_hub():
                return
            raise SpecError(
                "Hugging Face ids are off in this dashboard; pick a model in the sidebar, "
                f"put the checkpoint under {models_dir()}, or serve with SVDLENS_ALLOW_HUB=1."
            )
        # Normalised, not resolved: ".." cannot climb out, but a symlink the operator put
        # in the models folder is honoured.
        where = Path(os.path.abspath(path))
        if any(where == r or r in where.parents for r in map(Path, map(os.path.abspath, roots))):
            return
    except OSError:  # a name too long for the file system, say: refused like any other
        pass
    raise SpecError(
        "The dashboard opens only its embedded models and checkpoints under "
        f"{models_dir()} (SVDLENS_MODELS_DIR); pick one in the sidebar."
    )


def warm_nulls() -> bool:
    """Whether a settled search index computes the significance nulls of common query
    shapes in the background (``$SVDLENS_WARM_NULLS``; on unless ``0``, ``false`` or
    ``no``)."""
    return os.environ.get("SVDLENS_WARM_NULLS", "").strip().lower() not in ("0", "false", "no")
