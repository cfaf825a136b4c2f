"""Ablation sweeps: the batched hooks against one edited copy per direction, and a
planted direction that must dominate (both signs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.edit.ablate import sweep
from core.edit.hf import apply_edits, plain_model
from core.edit.prompts import target_logprob
from core.edit.rank_one import Edit, EditSet, rank_one_updates
from core.edit.report import measure
from core.edit.rows import run_with_row_updates
from core.query import directions
from tests.core.edit.conftest import open_checkpoint
from tests.tiny_models import make_hf_model, make_tokenizer

PROMPT = "the cat and a dog ran across the green field to the"


@pytest.mark.parametrize("arch,kind,head", [("gpt2", "ov", 2), ("llama", "mlp_gate", None)])
def test_batched_sweep_equals_one_copy_per_direction(analyses, arch, kind, head):
    a = analyses(arch)
    rows = sweep(a, kind, 1, head, PROMPT, " the", n=6, batch=4)
    base = target_logprob(plain_model(a), a.model.tokenizer, PROMPT, " the")
    assert [r.index for r in rows] == list(range(6))
    for r in rows:
        m = apply_edits(a, [Edit(kind, 1, head, r.index)]).model
        lp = target_logprob(m, a.model.tokenizer, PROMPT, " the")
        assert r.logprob == pytest.approx(lp, abs=1e-4)
        assert r.delta_logprob == pytest.approx(lp - base, abs=1e-4)


def test_sweep_on_top_of_edits_scales_from_the_edited_model(analyses):
    a = analyses("neox", "raw")
    edits = EditSet.parse("mlp_out:0:0")
    rows = sweep(a, "ov", 1, 0, PROMPT, " the", n=3, scale=0.5, edits=edits)
    tok = a.model.tokenizer
    base = target_logprob(apply_edits(a, edits).model, tok, PROMPT, " the")
    for r in rows:
        m = apply_edits(a, edits.add(Edit("ov", 1, 0, r.index, 0.5))).model
        lp = target_logprob(m, tok, PROMPT, " the")
        assert r.delta_logprob == pytest.approx(lp - base, abs=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_row_updates_on_different_matrices_equal_one_edited_copy_per_row(analyses, arch):
    """One batch whose rows edit different matrices, one matrix twice, several matrices
    at once, or nothing: each row's log-probs are those of a model edited by that row's
    updates alone."""
    a = analyses(arch)
    tok = a.model.tokenizer
    sets = [[Edit("ov", 1, 0, 0)], [Edit("mlp_in", 0, None, 1)], [Edit("ov", 1, 2, 3)],
            [Edit("mlp_out", 1, None, 0)], [Edit("ov", 0, 1, 1), Edit("ov", 0, 1, 4)],
            [Edit("mlp_in", 1, None, 2), Edit("ov", 0, 3, 0), Edit("mlp_out", 0, None, 5)],
            []]  # fmt: skip
    if arch == "llama":
        sets.append([Edit("mlp_gate", 1, None, 2)])
    ups = [rank_one_updates(a, s) for s in sets]
    ids = tok(PROMPT)["input_ids"]
    lp = run_with_row_updates(plain_model(a), torch.tensor([ids] * len(ups)), ups)
    for row, s in zip(lp, sets):
        with torch.no_grad():
            logits = apply_edits(a, s).model(input_ids=torch.tensor([ids])).logits[0]
        want = torch.log_softmax(logits.double(), -1)
        assert torch.allclose(row.double(), want, atol=1e-4), s
    with pytest.raises(ValueError, match="one list of updates per batch row"):
        run_with_row_updates(plain_model(a), torch.tensor([ids]), ups)


def _single_token(tok, words) -> tuple[str, int]:
    for w in words:
        ids = tok(w, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return w, ids[0]
    raise AssertionError("no single-token word")


def _planted(root: Path, sign: float) -> tuple[Path, str]:
    """A GPT-2 whose head 1.0 writes (sign x) the target's unembedding direction, fed by
    a constant value bias, so one OV direction carries the target."""
    tok = make_tokenizer()
    target, t = _single_token(tok, [" cat", " dog", " the", " and", " fish"])
    hf = make_hf_model("gpt2", seed=7)
    d, dh = hf.config.n_embd, hf.config.n_embd // hf.config.n_head
    with torch.no_grad():
        w_f = hf.transformer.ln_f.weight.double()
        col = w_f * hf.lm_head.weight[t].double()
        col = col - col.mean()
        attn = hf.transformer.h[1].attn
        attn.c_proj.weight[0] += (sign * 2.0 * col / col.norm()).float()
        attn.c_attn.bias[2 * d + 0] = 3.0
        assert dh > 1
    path = root / f"planted{'+' if sign > 0 else '-'}"
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return path, target


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_planted_direction_dominates_the_sweep(tmp_path, sign):
    path, target = _planted(tmp_path, sign)
    a = open_checkpoint(path, "post", tmp_path / "cache")
    top = directions(a, "ov", 1, 0, n=1, k=3)[0]
    assert top.top[0][0] == target  # the planted direction lists the target first
    rows = sweep(a, "ov", 1, 0, PROMPT, target, n=16, batch=8)
    deltas = [r.delta_logprob for r in rows]
    if sign > 0:
        assert min(range(16), key=deltas.__getitem__) == 0
        assert deltas[0] < -0.3
    else:  # the antipodal plant pushed the target down; removing it raises it
        assert max(range(16), key=deltas.__getitem__) == 0
        assert deltas[0] > 0.3
    assert abs(deltas[0]) > 10 * max(abs(x) for x in deltas[1:])
    report = measure(a, [Edit("ov", 1, 0, 0)], PROMPT, target, max_new_tokens=3)
    assert report.shift.delta == pytest.approx(deltas[0], abs=1e-4)


def _same_plan(got, want) -> None:
    assert (got.sigma, got.draws) == (want.sigma, want.draws)
    for mine, theirs in zip(
        (*got.updates, *(u for row in got.draw_updates for u in row)),
        (*want.updates, *(u for row in want.draw_updates for u in row)),
        strict=True,
    ):
        assert mine.target == theirs.target
        torch.testing.assert_close(mine.left, theirs.left)
        torch.testing.assert_close(mine.right, theirs.right)


def test_a_kept_plan_serves_fewer_directions_as_their_own_plan(analyses, monkeypatch):
    """Fewer directions are a slice of the matrix's kept plan, equal to planning them
    alone; more are planned again, and each matrix has its own plan."""
    import core.edit.ablate as ablate

    a = analyses("llama")
    made: list[int] = []
    real = ablate.plan_sweep

    def counted(*args, **kwargs):
        made.append(args[4])
        return real(*args, **kwargs)

    monkeypatch.setattr(ablate, "plan_sweep", counted)
    plans = ablate.SweepPlans(a, kept=2)
    six = plans.plan("mlp_in", 1, None, 6)
    three = plans.plan("mlp_in", 1, None, 3)
    assert made == [6]
    monkeypatch.setattr(ablate, "plan_sweep", real)
    _same_plan(three, ablate.plan_sweep(a, "mlp_in", 1, None, 3))
    _same_plan(six, ablate.plan_sweep(a, "mlp_in", 1, None, 6))
    monkeypatch.setattr(ablate, "plan_sweep", counted)
    assert len(plans.plan("mlp_in", 1, None, 8).updates) == 8 and made == [6, 8]
    plans.plan("ov", 1, 2, 4)
    assert made == [6, 8, 4] and len(plans) == 2
    # A third matrix pushes out the one asked for least recently.
    plans.plan("ov", 0, 1, 2)
    plans.plan("mlp_in", 1, None, 2)
    assert made == [6, 8, 4, 2, 2]


def test_a_failed_plan_is_dropped_alone_and_planned_again(analyses, monkeypatch):
    import core.edit.ablate as ablate
    from core.errors import CoreError

    a = analyses("gpt2")
    real, failures, made = ablate.plan_sweep, [1], []

    def flaky(*args, **kwargs):
        made.append(args[1:4])
        if args[1] == "mlp_in" and failures:
            failures.pop()
            raise CoreError("The weights changed on disk; reload the model.")
        return real(*args, **kwargs)

    monkeypatch.setattr(ablate, "plan_sweep", flaky)
    plans = ablate.SweepPlans(a)
    plans.plan("ov", 1, 2, 3)
    with pytest.raises(CoreError, match="reload the model"):
        plans.plan("mlp_in", 1, None, 3)
    assert len(plans.plan("mlp_in", 1, None, 3).updates) == 3
    plans.plan("ov", 1, 2, 3)  # kept through the other matrix's failure
    assert made == [("ov", 1, 2), ("mlp_in", 1, None), ("mlp_in", 1, None)]


def test_a_plan_made_on_its_own_thread_is_plan_sweep(analyses) -> None:
    from core.edit.ablate import SweepPlanJob, plan_sweep
    from core.errors import SpecError

    a = analyses("gpt2")
    job = SweepPlanJob(a, "ov", 1, 2, 4).start()
    _same_plan(job.result(), plan_sweep(a, "ov", 1, 2, 4))
    assert job.done.is_set() and job.error is None
    # A bad layer stops the thread; the caller gets its one sentence.
    bad = SweepPlanJob(a, "ov", 99, 0, 4).start()
    with pytest.raises(SpecError):
        bad.result()
    assert bad.done.is_set()
