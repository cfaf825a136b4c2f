"""The full report: each number is the one its own measurement gives, and the JSON
holds what the CLI prints."""

from __future__ import annotations

import pytest

from core.edit.continuation import continuation
from core.edit.hf import apply_edits, plain_model
from core.edit.prompts import FALLBACK_TEXT, reference_ids, target_logprob
from core.edit.rank_one import EditSet
from core.edit.report import measure, reference_specificity, unedited_reference
from core.edit.specificity import specificity


def test_report_is_its_parts(analyses):
    a = analyses("llama")
    tok = a.model.tokenizer
    edits = EditSet.parse("ov:1:0:0,mlp_gate:0:1*0.5")
    ref = reference_ids(tok, [FALLBACK_TEXT], 16, 2)
    r = measure(a, edits, "the fire", " hot flames", ref, max_new_tokens=4)
    base, edited = plain_model(a), apply_edits(a, edits).model
    assert r.shift.logprob_before == pytest.approx(
        target_logprob(base, tok, "the fire", " hot flames")
    )
    assert r.shift.logprob_after == pytest.approx(
        target_logprob(edited, tok, "the fire", " hot flames")
    )
    assert r.specificity == specificity(base, edited, ref)
    # The unedited pass made once serves the edited model's specificity.
    once = unedited_reference(a, ref)
    assert reference_specificity(a, apply_edits(a, edits), once) == r.specificity
    assert r.continuation_before == continuation(base, tok, "the fire", 4)
    assert r.continuation_after == continuation(edited, tok, "the fire", 4)
    assert "".join(r.shift.target_tokens) == " hot flames"
    # Each matched draw's change is that of the model edited by the draw's whole set.
    assert len(r.shift.random.draws) == len(r.shift.random.deltas) >= 2
    for d, delta in zip(r.shift.random.draws, r.shift.random.deltas):
        assert len(d) == 2
        drawn = target_logprob(apply_edits(a, d).model, tok, "the fire", " hot flames")
        assert delta == pytest.approx(drawn - r.shift.logprob_before, abs=1e-4)
    j = r.to_json()
    assert j["edits"] == "ov:1:0:0,mlp_gate:0:1*0.5" and j["reference_tokens"] == 32
    assert j["delta_logprob"] == pytest.approx(r.shift.logprob_after - r.shift.logprob_before)
    assert set(j) >= {
        "target_logprob_before",
        "target_logprob_after",
        "kl_reference",
        "loss_before",
        "loss_after",
        "continuation_before",
        "continuation_after",
    }


def test_default_reference_is_the_held_out_text(analyses):
    a = analyses("gpt2")
    r = measure(a, EditSet.parse("ov:1:0:0"), "the fire", " cat", max_new_tokens=0)
    assert r.specificity.n_tokens > 0 and r.continuation_before == r.continuation_after == ""
