"""Analyses of the tiny checkpoints and a small corpus for the activation tests."""

from __future__ import annotations

import pytest

from core.activations.corpus import Corpus, Document
from core.analysis import Analysis, open_analysis
from core.settings import Settings

DOCS = (
    "the fire burned with hot flames and smoke while ice and snow froze the cold water",
    "a cat and a dog ran across the green field to the river where fish swim",
    "one two three four five six seven eight nine ten numbers count the days",
    "red blue yellow green colours paint the house king queen prince castle war army",
    "the cat saw the fire and the dog saw the snow on the green house",
)


def small_corpus(heldout: str = "the king and queen count the fish in the river") -> Corpus:
    """Five training documents and one held-out one."""
    docs = [Document(i, "test", "train", t) for i, t in enumerate(DOCS)]
    return Corpus.of([*docs, Document(len(docs), "test", "heldout", heldout)])


@pytest.fixture(scope="session")
def analyses(checkpoints, tmp_path_factory):
    """``get(arch, processing)``: one CPU analysis per pair, opened on first use."""
    cache = tmp_path_factory.mktemp("act-cache")
    made: dict[tuple[str, str], Analysis] = {}

    def get(arch: str, processing: str = "raw") -> Analysis:
        if (arch, processing) not in made:
            made[arch, processing] = open_analysis(
                Settings(
                    model=str(checkpoints[arch]),
                    processing=processing,
                    device="cpu",
                    cache_dir=cache,
                )
            )
        return made[arch, processing]

    return get
