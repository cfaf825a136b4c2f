"""Offline labeller: token handling, coherence vs a random-set null, concept naming."""

from __future__ import annotations

import random

import pytest
import torch

from core.label.concepts import EXTRA_CONCEPTS, load_concepts
from core.label.offline import (
    NullDistribution,
    OfflineLabeller,
    OfflineParams,
    clean_token,
    is_byte_token,
    load_embedder,
    token_weight,
)

ANIMALS = ("dog", "cat", "horse", "cow", "sheep", "lion", "tiger", "wolf", "bear", "rabbit",
           "mouse", "goat", "pig", "deer", "fox")  # fmt: skip
FRAGMENTS = ("ibr", "orage", "umeric", "qx", ";", "ization", "ells", "zz", "12", "==", "ptr",
             "ouch", "<0x0A>", "ulin", "ardo")  # fmt: skip
CONCEPTS = ("animal", "colour", "food", "weekday", "number", "vehicle", "emotion", "politics",
            "music", "weather", "clothing", "suffixes", "computer code", "sport")  # fmt: skip


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("cpu")


def make_vocab(words: frozenset[str], seed: int = 0) -> list[str]:
    """A GPT-2-like mix: words with and without a leading space, fragments, digits, bytes."""
    rng = random.Random(seed)
    ws = sorted(words)[::60]
    frags = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 5)))
             for _ in range(150)]  # fmt: skip
    vocab = [(" " + w if i % 2 else w) for i, w in enumerate(ws)] + frags
    vocab += [str(i) for i in range(60)] + list(".,;:!?'\"()[]{}<>") + ["<0x0A>", "\ufffd"]
    return vocab


@pytest.fixture(scope="module")
def labeller(embedder) -> OfflineLabeller:
    vocab = make_vocab(embedder.words)
    return OfflineLabeller(embedder, vocab, OfflineParams(null_sets=150), CONCEPTS)


def test_clean_and_weights(embedder) -> None:
    p = OfflineParams()
    assert clean_token(" dog") == "dog"
    assert clean_token("Ġdog") == "dog" and clean_token("▁Dog") == "Dog"
    assert clean_token("##ing") == "ing" and clean_token("  ") == ""
    assert is_byte_token("<0x0A>") and is_byte_token("\ufffd") and is_byte_token("<|endoftext|>")
    assert is_byte_token("<pad:5>") and not is_byte_token("dog")
    w = embedder.words
    assert token_weight("dog", w, p) == 1.0 and token_weight("Dog", w, p) == 1.0
    assert token_weight("orage", w, p) == p.fragment_weight
    assert token_weight("'s", w, p) == p.other_weight
    assert token_weight("1999", w, p) == token_weight(";", w, p) == token_weight("", w, p) == 0.0
    assert token_weight("<0x0A>", w, p) == 0.0


def test_animals_beat_fragments(labeller: OfflineLabeller) -> None:
    a = labeller.score(ANIMALS)
    f = labeller.score(FRAGMENTS)
    assert a.interpretable and not f.interpretable
    assert a.z > f.z + 3 and a.percentile > 0.99
    assert a.label == "animal" and a.word_fraction == 1.0
    assert f.word_fraction < 0.3 and "<0x0A>" not in f.kept and ";" not in f.kept


def test_junk_fraction_lowers_score(labeller: OfflineLabeller) -> None:
    pure = labeller.score(ANIMALS)
    half = labeller.score(ANIMALS[:7] + FRAGMENTS[:8])
    mostly_junk = labeller.score(ANIMALS[:3] + FRAGMENTS[:12])
    assert pure.z > half.z > mostly_junk.z
    # leading-space markers and case variants do not change the verdict, duplicates lower it
    spaced = labeller.score(tuple(" " + t for t in ANIMALS))
    assert spaced.coherence == pytest.approx(pure.coherence)
    dup = labeller.score(ANIMALS[:8] + tuple(t.upper() for t in ANIMALS[:7]))
    assert dup.coherence < pure.coherence and len(dup.kept) == 8


def test_random_sets_are_mostly_not_interpretable(labeller: OfflineLabeller) -> None:
    rng = random.Random(1)
    vocab = make_vocab(labeller.embedder.words, seed=0)
    verdicts = [labeller.score(rng.sample(vocab, 15)) for _ in range(60)]
    share = sum(v.interpretable for v in verdicts) / len(verdicts)
    assert share < 0.2
    zs = torch.tensor([v.z for v in verdicts])
    assert abs(float(zs.mean())) < 1.0


def test_other_themes_are_named(labeller: OfflineLabeller) -> None:
    days = labeller.score(("Monday", "Tuesday", "Friday", " Sunday", "weekend", "Saturday",
                           "week", "Thursday", "Wednesday", "ogg"))  # fmt: skip
    assert days.interpretable and days.label == "weekday"
    colours = labeller.score(("red", "blue", "green", "yellow", "purple", "orange", "pink",
                              "brown", "ulin", "white", "black", "grey", "ptr"))  # fmt: skip
    assert colours.interpretable and colours.label == "colour"
    assert labeller.score(()).label == "" and not labeller.score(()).interpretable


NUMBERS = ("6", "5", "35", "13", "625", "7", "55", "42", "10", "1", "15", "14", "620", "8", "19")
PUNCT = (".", ";", ".(", ".<", ",", '.",', "!", "!,", ".--", ".[", ".</", ".]", "!.", ".,", ":(")


def test_numbers_and_punctuation_are_coherent_in_form(embedder, labeller) -> None:
    frag = labeller.score(FRAGMENTS)
    nums, punct = labeller.score(NUMBERS), labeller.score(PUNCT)
    assert nums.z > frag.z + 2 and punct.z > frag.z + 2
    assert nums.coherence == pytest.approx(OfflineParams().form_weight)  # all mates are numbers
    # without the form route neither has anything the embedding statistic keeps
    plain = OfflineLabeller(embedder, make_vocab(embedder.words),
                            OfflineParams(null_sets=150, form_weight=0.0), CONCEPTS)  # fmt: skip
    assert plain.coherence(NUMBERS) == plain.coherence(PUNCT) == 0.0


def test_score_combines_coherence_with_token_features(labeller: OfflineLabeller) -> None:
    a = labeller.score(ANIMALS)
    cnull, lnull = labeller.nulls(len(ANIMALS))
    assert a.coherence_z == pytest.approx((a.coherence - cnull.mean) / cnull.std)
    assert a.logit == pytest.approx(labeller.scorer.logit(a.coherence_z, a.features))
    assert a.z == pytest.approx((a.logit - lnull.mean) / lnull.std)
    assert a.features.common_share == 1.0 and a.features.repeat_share == 0.0
    assert {"z", "coherence_z", "logit", "common_share", "word_frequency"} <= set(a.to_json())


def test_null_distribution_and_params() -> None:
    null = NullDistribution(5, torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert null.percentile(0.25) == 0.5 and null.percentile(0.3) == 0.625
    assert null.percentile(1.0) == 1.0 and null.percentile(0.0) == 0.0
    with pytest.raises(ValueError):
        NullDistribution(5, torch.tensor([0.1]))
    with pytest.raises(ValueError):
        OfflineParams(top_fraction=0.0)
    with pytest.raises(ValueError):
        OfflineParams(neighbours=0)
    with pytest.raises(ValueError):
        OfflineParams(form_weight=-0.1)


def test_null_is_seeded(embedder) -> None:
    vocab = make_vocab(embedder.words)
    p = OfflineParams(null_sets=20)
    a = OfflineLabeller(embedder, vocab, p, CONCEPTS).nulls(10)
    b = OfflineLabeller(embedder, vocab, p, CONCEPTS).nulls(10)
    assert torch.equal(a[0].samples, b[0].samples) and torch.equal(a[1].samples, b[1].samples)


def test_concept_file_is_broad() -> None:
    concepts = load_concepts()
    assert 1000 <= len(concepts) <= 5000 and len(set(concepts)) == len(concepts)
    assert {"animal", "food", "weapon", "vehicle"} <= set(concepts)
    assert set(EXTRA_CONCEPTS) <= set(concepts)
    assert not any("genus" in c for c in concepts)
