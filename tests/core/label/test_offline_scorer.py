"""The offline labeller's token-quality features and fixed scorer, against plain references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import wordfreq

from core.label.scorer import (
    COMMON_ZIPF,
    FEATURES,
    SCORER_FILE,
    Scorer,
    form_class,
    load_scorer,
    token_features,
    zipf_frequency,
)


def test_form_classes() -> None:
    assert form_class("1999") == form_class("3.14") == form_class("$5") == "number"
    assert form_class(".") == form_class(".</") == form_class("(%)") == "punctuation"
    assert form_class("dog") is None and form_class("'s") is None and form_class("x86") is None
    assert form_class("") is None and form_class("<0x0A>") is None and form_class("\ufffd") is None


def test_zipf_is_log10_of_frequency_per_billion_words() -> None:
    for w in ("the", "dog", "horse", "ostrich"):
        per_word = wordfreq.word_frequency(w, "en")
        assert zipf_frequency(w) == pytest.approx(math.log10(per_word * 1e9), abs=0.01)
    assert 7.0 < zipf_frequency("the") < 8.0
    assert zipf_frequency("the") > zipf_frequency("dog") > COMMON_ZIPF > zipf_frequency("orage")
    assert zipf_frequency("qzxv") == 0.0 and zipf_frequency(";") == 0.0


def test_token_features_match_a_plain_count() -> None:
    toks = [" dog", "Dog", "ĠDOG", "cat", "orage", "ulin", ";", "12"]
    f = token_features(toks)
    cleaned = ["dog", "Dog", "DOG", "cat", "orage", "ulin", ";", "12"]
    zipf = [wordfreq.zipf_frequency(c, "en") for c in cleaned]
    assert f.common_share == pytest.approx(sum(z >= 3.0 for z in zipf) / 8)
    assert f.repeat_share == pytest.approx(2 / 8)  # two repeats of "dog" in other cases
    assert f.word_frequency == pytest.approx(sum(zipf) / 8, abs=1e-6)
    assert token_features([]).common_share == 0.0


def test_scorer_logit_is_the_plain_linear_form() -> None:
    s = Scorer(-1.0, (0.5, 2.0, 1.0))
    f = token_features(["dog", "cat", "dog", "orage"])
    want = -1.0 + 0.5 * 3.0 + 2.0 * f.common_share + 1.0 * f.repeat_share
    assert s.logit(3.0, f) == pytest.approx(want)
    with pytest.raises(ValueError):
        Scorer(0.0, (1.0,))


def test_shipped_scorer_and_its_provenance(tmp_path: Path) -> None:
    s = load_scorer()
    assert s.coefficients[0] > 0 and s.coefficients[1] > 0  # coherence and common words help
    data = json.loads(SCORER_FILE.read_text())
    assert tuple(data["features"]) == FEATURES
    prov = s.provenance
    assert prov["fitted_on"] and not set(prov["fitted_on"]) & set(prov["held_out"])
    assert Scorer(s.intercept, s.coefficients) == s
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "features": ["z"]}))
    with pytest.raises(ValueError, match="features"):
        load_scorer(bad)
