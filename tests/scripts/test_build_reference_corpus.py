"""``scripts/build_reference_corpus.py``'s sampling (the readers need Debian packages,
which the shipped corpus's test covers)."""

from __future__ import annotations

import importlib.util
import sys

from tests.scripts.test_bench_report import ROOT


def _module():
    spec = importlib.util.spec_from_file_location(
        "build_reference_corpus", ROOT / "scripts" / "build_reference_corpus.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_reference_corpus"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_sample_is_deterministic_split_by_the_demo_hash_and_capped():
    m = _module()
    docs = [f"document number {i} about something\n\nwith a blank line" for i in range(400)]
    train, held = m.sample(docs, chars=3000, frac=0.1)
    again = m.sample(reversed(docs), chars=3000, frac=0.1)
    assert (train, held) == again  # order of reading does not matter
    assert all(not m.is_heldout(d, 0.1) for d in train) and all(m.is_heldout(d, 0.1) for d in held)
    assert 3000 <= sum(map(len, train)) < 3000 + 60
    assert all("\n\n" not in d for d in train + held)
    long = "line\n" * 1000
    assert all(len(p) <= m.MAX_DOC for p in m._split_long(long))
    assert "".join(m._split_long(long)).count("line") == 1000
