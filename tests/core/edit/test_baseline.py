"""Edit baselines: matched random draws, the target's rank by decrease and the other
tokens' median change, against plain Hugging Face forward passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from core.edit.ablate import plan_sweep, run_sweep
from core.edit.baseline import (
    POOL,
    RandomBaseline,
    matched_draw,
    matched_draws,
    vocabulary_shift,
)
from core.edit.hf import apply_edits
from core.edit.prompts import target_logprob
from core.edit.rank_one import Edit, EditSet
from core.edit.report import measure
from core.query import kind_result


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_draws_are_matched_in_kind_index_and_sigma(analyses, arch) -> None:
    a = analyses(arch)
    edits = [Edit("ov", 1, 0, 2), Edit("mlp_in", 0, None, 5), Edit("mlp_out", 1, None, 1, 0.5)]
    touched = {e.component for e in edits}
    for seed in range(4):
        draw = matched_draw(a, edits, seed)
        assert len(draw) == len(edits)
        for e, r in zip(edits, draw):
            assert (r.kind, r.index, r.scale) == (e.kind, e.index, e.scale)
            assert r.component not in touched
            # Among the POOL components nearest in log-σ at that index (brute force).
            d = kind_result(a, e.kind).decomposition
            s0 = float(d.S[d.index(e.layer, e.head), e.index])
            gaps = sorted(
                abs(math.log(float(d.S[c, e.index])) - math.log(s0))
                for c, comp in enumerate(d.components)
                if (e.kind, *comp) not in touched
            )
            got = abs(math.log(float(d.S[d.index(r.layer, r.head), e.index])) - math.log(s0))
            assert got <= gaps[min(POOL, len(gaps)) - 1] + 1e-12
    assert matched_draws(a, edits, 3) == matched_draws(a, edits, 3)  # seeded


def test_rank_and_median_match_two_plain_hf_forward_passes(analyses, checkpoints) -> None:
    a = analyses("gpt2")
    prompt, target = "the fire burned with", " hot"
    edits = EditSet.parse("ov:1:2:0,mlp_out:0:3")
    report = measure(a, edits, prompt, target, max_new_tokens=0, random_draws=2).shift
    # The ids the tool runs (its tokenizer's special tokens included), then plain HF.
    tok = a.model.tokenizer
    ids = torch.tensor([tok(prompt)["input_ids"]])
    t = tok(prompt + target)["input_ids"][ids.shape[1]]  # the first target token
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(checkpoints["gpt2"]).eval()
        lp0 = torch.log_softmax(plain(input_ids=ids).logits[0, -1].double(), -1).numpy()
        edited = apply_edits(a, edits).model
        lp1 = torch.log_softmax(edited(input_ids=ids).logits[0, -1].double(), -1).numpy()
    delta = lp1 - lp0
    order = np.argsort(delta, kind="stable")  # most decreased first
    rank = int(np.nonzero(delta[order] == delta[t])[0][0]) + 1  # ties in its favour
    assert report.target_rank == rank
    assert report.n_vocab == len(delta)
    assert report.median_abs_delta == pytest.approx(
        float(np.median(np.abs(np.delete(delta, t)))), rel=1e-4, abs=1e-7
    )
    # The random draws: each a matched set, its delta the one its own edit gives.
    assert len(report.random.draws) == 2
    for d, dd in zip(report.random.draws, report.random.deltas):
        assert [(e.kind, e.index) for e in d] == [(e.kind, e.index) for e in edits]
        got = target_logprob(apply_edits(a, d).model, a.model.tokenizer, prompt, target)
        assert dd == pytest.approx(got - report.logprob_before, abs=1e-5)
    j = report.to_json()
    assert j["target_rank_by_decrease"] == rank and j["vocabulary_size"] == len(delta)
    assert len(j["random_baseline"]["draws"]) == 2
    assert j["random_baseline"]["mean"] == pytest.approx(float(np.mean(report.random.deltas)))
    assert j["random_baseline"]["std"] == pytest.approx(float(np.std(report.random.deltas, ddof=1)))
    assert j["exceeds_random"] == (abs(report.delta) > max(abs(x) for x in report.random.deltas))


def test_vocabulary_shift_counts_ties_in_the_tokens_favour() -> None:
    before = torch.zeros(5)
    after = torch.tensor([-1.0, -2.0, -1.0, 0.5, 0.0])
    assert vocabulary_shift(before, after, 0) == (
        2,
        pytest.approx(float(np.median([2, 1, 0.5, 0]))),
    )
    assert vocabulary_shift(before, after, 1)[0] == 1


def test_a_sweep_plan_serves_every_prompt_and_target(analyses) -> None:
    """Each row and each matched draw of a planned sweep equals the target's change under
    its own edited copy of the model, for two prompt/target pairs of one plan."""
    a = analyses("neox")
    plan = plan_sweep(a, "mlp_in", 1, None, n=3, n_draws=2)
    tok = a.model.tokenizer
    for prompt, target in (("the cat", " ran"), ("a dog sat on", " the mat")):
        rows, base = run_sweep(a, plan, prompt, target)
        before = target_logprob(apply_edits(a, EditSet()).model, tok, prompt, target)
        assert [r.index for r in rows] == [0, 1, 2] and len(base) == 3
        for r, b in zip(rows, base):
            removed = apply_edits(a, [Edit("mlp_in", 1, None, r.index)]).model
            want = target_logprob(removed, tok, prompt, target) - before
            assert r.delta_logprob == pytest.approx(want, abs=1e-4)
            assert r.logprob == pytest.approx(want + before, abs=1e-4)
            assert len(b.draws) == 2
            for d, dd in zip(b.draws, b.deltas):
                (e,) = d
                assert (e.kind, e.index) == ("mlp_in", r.index) and e.layer != 1
                got = target_logprob(apply_edits(a, d).model, tok, prompt, target) - before
                assert dd == pytest.approx(got, abs=1e-4)
            assert b.exceeded_by(r.delta_logprob) == (
                abs(r.delta_logprob) > max(abs(x) for x in b.deltas)
            )


def test_single_edit_deltas_keep_the_order_of_edits_across_components(analyses) -> None:
    from core.edit import rank_one
    from core.edit.baseline import set_deltas
    from core.edit.hf import plain_model
    from core.edit.prompts import prompt_ids, score, target_ids

    a = analyses("gpt2")
    tok = a.model.tokenizer
    p, t = prompt_ids(tok, "the cat"), target_ids(tok, " ran", "the cat")
    base = plain_model(a)
    before = score(base, p, t)
    # Interleaved components and matrices: batched by matrix, answered in this order.
    edits = [Edit("ov", 1, 0, 0), Edit("ov", 0, 2, 1), Edit("ov", 1, 3, 2), Edit("mlp_in", 0, None, 1),
             Edit("ov", 0, 2, 0)]  # fmt: skip
    decomposed: list[tuple[str, int, int | None]] = []
    real = rank_one.token_vectors

    def counted(analysis, kind, layer, head, indices):
        decomposed.append((kind, layer, head))
        return real(analysis, kind, layer, head, indices)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rank_one, "token_vectors", counted)
        got = set_deltas(a, base, p, t, [[e] for e in edits], before)
    # Each component's matrix is decomposed once (ov 0:2 has two edits).
    assert sorted(decomposed) == sorted({e.component for e in edits})
    for e, d in zip(edits, got):
        want = target_logprob(apply_edits(a, [e]).model, tok, "the cat", " ran") - before
        assert d == pytest.approx(want, abs=1e-5)


def test_empty_baseline() -> None:
    b = RandomBaseline((), ())
    assert b.exceeded_by(1.0) is None and math.isnan(b.mean)
    assert b.to_json()["mean"] is None
