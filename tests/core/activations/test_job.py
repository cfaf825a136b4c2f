"""The background build: progress moves, the result is the cached one, errors are kept."""

from __future__ import annotations

from core.activations.examples import ExampleOptions
from core.activations.job import ExampleJob
from core.activations.store import load_examples
from tests.core.activations.conftest import small_corpus


def test_job_builds_and_writes_the_examples(analyses):
    a = analyses("gpt2", "raw")
    corpus = small_corpus()
    opts = ExampleOptions(tokens=40, n=2)
    called = []
    job = ExampleJob(a, corpus, opts, on_done=lambda: called.append(True)).start()
    assert job.wait(120)
    assert job.error is None and job.result is not None and called == [True]
    assert job.status() == {
        "fraction": 1.0,
        "message": "examples built",
        "done": True,
        "error": None,
    }
    assert load_examples(a, opts.key(corpus)).n_tokens == job.result.n_tokens == 40


def test_job_keeps_its_error(analyses):
    a = analyses("gpt2", "raw")
    full = small_corpus()
    train_only = type(full).of([d for d in full.documents if d.split == "train"])
    job = ExampleJob(a, train_only, ExampleOptions(tokens=40, split="heldout", n=2))
    job.start()
    assert job.wait(120)
    assert job.result is None and "has no text" in str(job.error)
    assert job.status()["done"] is True
