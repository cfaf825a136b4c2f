"""A matrix's directions before and after edits: removed ones vanish, scaled ones keep
their vector with a scaled singular value, the rest map to themselves by cosine, and the
edited matrix is signed by the cache's rule."""

from __future__ import annotations

import pytest
import torch

from core.edit.compare import compare, edited_component
from core.edit.rank_one import Edit
from core.query import directions
from tests.core import reference as ref


def test_compare_matches_directions_by_cosine(analyses):
    a = analyses("neox", "post")
    c = compare(a, [Edit("ov", 1, 0, 1), Edit("ov", 1, 0, 3, 0.5)], "ov", 1, 0, n=8, k=5)
    assert [m.index for m in c.matches] == list(range(8))
    for m in c.matches:
        if m.index == 1:
            assert m.after_index is None
        else:
            assert m.after_index is not None and abs(m.cosine) > 0.999
            factor = 0.5 if m.index == 3 else 1.0
            assert m.s_after == pytest.approx(factor * m.s_before, rel=1e-4)
    assert len(c.after) == 8 and len(c.after[0].top) == 5
    # No edit: every direction maps to itself with the same sign.
    c0 = compare(a, [], "mlp_in", 0, None, n=5)
    assert [(m.after_index, round(m.cosine, 4)) for m in c0.matches] == [(i, 1.0) for i in range(5)]


@pytest.mark.parametrize("kind", ["mlp_out", "mlp_gate"])
def test_compare_mlp_removed_and_scaled(analyses, kind):
    a = analyses("llama", "raw")
    c = compare(a, [Edit(kind, 0, None, 0), Edit(kind, 0, None, 2, 0.25)], kind, 0, None, n=5)
    assert c.matches[0].after_index is None
    assert c.matches[2].s_after == pytest.approx(0.25 * c.matches[2].s_before, rel=1e-4)
    for m in (c.matches[1], c.matches[3], c.matches[4]):
        assert abs(m.cosine) > 0.999 and m.s_after == pytest.approx(m.s_before, rel=1e-4)


@pytest.mark.parametrize("arch,processing", [("gpt2", "post"), ("llama", "post"), ("neox", "raw")])
def test_edited_component_is_the_dense_edit(analyses, checkpoints, arch, processing):
    """The edited matrix compare decomposes equals the dense edit of the checkpoint's
    matrix (folded by hand under post)."""
    from transformers import AutoModelForCausalLM

    a = analyses(arch, processing)
    orig = AutoModelForCausalLM.from_pretrained(checkpoints[arch]).eval()
    for kind, head in [("ov", 1), ("mlp_in", None), ("mlp_out", None)]:
        edits = [Edit(kind, 0, head, 1), Edit(kind, 0, head, 3, 0.5), Edit(kind, 1, head, 0)]
        A, B = edited_component(a, edits, kind, 0, head)
        got = A @ B if B is not None else A
        W0 = ref.component(orig, kind, 0, head, processing)
        U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
        want = W0 - S[1] * torch.outer(U[:, 1], Vh[1]) - 0.5 * S[3] * torch.outer(U[:, 3], Vh[3])
        assert torch.allclose(got, want, atol=2e-6 * float(W0.abs().max())), kind


def test_after_directions_follow_the_cache_sign_rule(analyses):
    """With no edits the recomputed directions list the same token ends as the cache."""
    a = analyses("gpt2", "post")
    c = compare(a, [], "ov", 1, 2, n=6, k=4)
    want = directions(a, "ov", 1, 2, n=6, k=4)
    for d, w in zip(c.after, want):
        assert [t for t, _, _ in d.top] == [t for t, _, _ in w.top]
        assert [t for t, _, _ in d.bottom] == [t for t, _, _ in w.bottom]
