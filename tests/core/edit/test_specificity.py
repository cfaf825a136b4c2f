"""Specificity: zero without edits, positive with them, losses by hand."""

from __future__ import annotations

import pytest
import torch

from core.edit.hf import apply_edits, plain_model
from core.edit.prompts import FALLBACK_TEXT, reference_ids
from core.edit.rank_one import EditSet
from core.edit.specificity import specificity


def test_specificity_is_zero_without_edits_and_positive_with(analyses):
    a = analyses("neox")
    tok = a.model.tokenizer
    ids = reference_ids(tok, [FALLBACK_TEXT, "one two three four five six seven"], 16, 4)
    assert ids.shape == (4, 16)
    base = plain_model(a)
    s0 = specificity(base, plain_model(a), ids)
    assert s0.kl == pytest.approx(0.0, abs=1e-7) and s0.loss_change == pytest.approx(0.0, abs=1e-6)
    edited = apply_edits(a, EditSet.parse("ov:0:0:0,ov:1:1:0,mlp_out:1:0,mlp_in:0:0")).model
    s1 = specificity(base, edited, ids, batch=3)
    assert s1.kl > 0 and s1.n_tokens == 64
    assert s1.loss_before == pytest.approx(s0.loss_before, abs=1e-6)
    with torch.no_grad():  # loss and KL by hand
        lp0 = torch.log_softmax(base(input_ids=ids).logits, -1)
        lp1 = torch.log_softmax(edited(input_ids=ids).logits, -1)
        nll = -lp1[:, :-1].gather(2, ids[:, 1:, None]).mean()
        kl = torch.nn.functional.kl_div(lp1, lp0, log_target=True, reduction="none").sum(-1)
    assert s1.loss_after == pytest.approx(float(nll), abs=1e-5)
    assert s1.kl == pytest.approx(float(kl.mean()), rel=1e-4)
