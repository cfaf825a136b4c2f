"""Examples through the cache: written, read back equal, rebuilt for another corpus or
budget, the held-out split read on request."""

from __future__ import annotations

import pytest
import torch

from core.activations.examples import ExampleOptions
from core.activations.store import get_examples, load_examples
from core.errors import CacheError, SpecError
from tests.core.activations.conftest import small_corpus


def test_examples_round_trip_and_rebuild(analyses):
    a = analyses("llama", "raw")
    corpus = small_corpus()
    opts = ExampleOptions(tokens=60, n=3)
    built = get_examples(a, corpus, opts)
    assert built is not None and built.seconds > 0
    again = load_examples(a, opts.key(corpus))
    assert again.n_tokens == built.n_tokens == 60
    assert (
        again.sides.keys()
        == built.sides.keys()
        == {
            "ov.read",
            "ov.write",
            "qk.query",
            "qk.key",
            "mlp_in.read",
            "mlp_gate.read",
            "mlp_out.write",
        }
    )
    for name, e in built.sides.items():
        for f in ("top_doc", "top_pos", "top_val", "bottom_val", "hist", "strong", "mean"):
            assert torch.equal(
                getattr(e, f).to(getattr(again.sides[name], f).dtype), getattr(again.sides[name], f)
            ), (name, f)
    # Another corpus, another budget: not in the cache, and not built when asked not to.
    other = small_corpus(heldout="another held-out text")
    assert other.digest != corpus.digest
    assert get_examples(a, other, opts, build=False) is None
    assert get_examples(a, corpus, ExampleOptions(tokens=61, n=3), build=False) is None
    with pytest.raises(CacheError):
        load_examples(a, ExampleOptions(tokens=61, n=3).key(corpus))
    held = get_examples(a, corpus, ExampleOptions(tokens=1000, n=3, split="heldout"))
    assert held is not None
    assert set(held.sides["ov.read"].top_doc.reshape(-1).tolist()) == {5}


def test_bad_options_are_one_sentence():
    with pytest.raises(SpecError, match="tokens must be at least 1"):
        ExampleOptions(tokens=0)
    with pytest.raises(SpecError, match="split must be one of"):
        list(small_corpus().split("test"))
