"""Activations beside the weights: every direction's dataset examples over a reference
corpus. Comes after ``edit`` in the pipeline (it runs the plain Hugging Face model).

Modules: ``corpus`` (the shipped reference corpus), ``capture`` (forward hooks),
``readers`` (the exact definition of a direction's activation), ``running`` (streaming
top/bottom N, histogram, strongly active share), ``examples`` (the build), ``store``
(the cache part), ``job`` (a background build), ``view`` (one direction's contexts).
"""

from core.activations.corpus import DEFAULT_CORPUS, Corpus, Document, load_corpus
from core.activations.examples import (
    DEFAULT_TOKENS,
    ExampleOptions,
    Examples,
    SideExamples,
    build_examples,
)
from core.activations.job import ExampleJob
from core.activations.readers import SIDES, resolve_side
from core.activations.store import get_examples, load_examples, save_examples
from core.activations.view import DirectionExamples, Example, direction_examples

__all__ = [
    "DEFAULT_CORPUS",
    "DEFAULT_TOKENS",
    "SIDES",
    "Corpus",
    "DirectionExamples",
    "Document",
    "Example",
    "ExampleJob",
    "ExampleOptions",
    "Examples",
    "SideExamples",
    "build_examples",
    "direction_examples",
    "get_examples",
    "load_corpus",
    "load_examples",
    "resolve_side",
    "save_examples",
]
