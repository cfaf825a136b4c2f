"""Rank-one updates: spectra and products against dense SVD references (raw and post,
three architectures, GQA), scaling, several edits, bad specs, edits a model lacks."""

from __future__ import annotations

import pytest
import torch

from core.analysis import Analysis
from core.edit.rank_one import Edit, EditSet, rank_one_updates, validate
from core.errors import SpecError
from core.model.weights import ModelWeights, process
from tests.tiny_models import ARCHS


def edited_raw(a: Analysis, edits) -> ModelWeights:
    """The raw weight view with the updates added (``process`` it to read it as ``a``)."""
    raw, m = a.raw, a.meta
    W = {"W_O": raw.W_O.clone().double(), "W_in": raw.W_in.clone().double()}
    W["W_out"] = raw.W_out.clone().double()
    if raw.W_gate is not None:
        W["W_gate"] = raw.W_gate.clone().double()
    field = {"mlp_in": "W_in", "mlp_gate": "W_gate", "mlp_out": "W_out"}
    for u in rank_one_updates(a, edits):
        name, layer = u.target
        delta = torch.outer(u.left, u.right)
        if name == "attn_out":
            W["W_O"][layer] += delta.reshape(m.n_heads, m.d_head, m.d_model)
        else:
            W[field[name]][layer] += delta
    return raw.replace(**{k: v.float() for k, v in W.items()})


def _kinds(a: Analysis) -> list[str]:
    return ["ov", "mlp_in", "mlp_out"] + (["mlp_gate"] if a.meta.gated else [])


def _dense(w, kind: str, layer: int, head: int | None) -> torch.Tensor:
    return w.matrix(kind, layer, head).double()


@pytest.mark.parametrize("processing", ["raw", "post"])
@pytest.mark.parametrize("arch", ARCHS)
def test_removal_drops_one_singular_value_and_equals_dense_edit(analyses, arch, processing):
    a = analyses(arch, processing)
    for kind in _kinds(a):
        head = 1 if kind == "ov" else None
        i = 2
        new = process(edited_raw(a, [Edit(kind, 1, head, i)]), processing)
        W0, W1 = _dense(a.weights, kind, 1, head), _dense(new, kind, 1, head)
        U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
        r = int((1e-6 * S[0] < S).sum())
        S1 = torch.linalg.svdvals(W1)
        want = torch.cat([S[:i], S[i + 1 : r]])
        assert torch.allclose(S1[: r - 1], want, rtol=1e-5, atol=0), kind
        assert float(S1[r - 1]) < 1e-5 * float(S[0]), kind
        dense = W0 - S[i] * torch.outer(U[:, i], Vh[i])
        assert torch.allclose(W1, dense, atol=1e-6 * float(W0.abs().max())), kind
        # Only the edited matrix changed (not the reading factor, other layers or heads).
        assert torch.equal(new.W_V, a.weights.W_V)
        changed = {
            "ov": [
                (new.W_O[lay, h] != a.weights.W_O[lay, h]).any().item()
                for lay in (0, 1)
                for h in range(a.meta.n_heads)
            ],
            "mlp_in": [(new.W_in[lay] != a.weights.W_in[lay]).any().item() for lay in (0, 1)],
            "mlp_out": [(new.W_out[lay] != a.weights.W_out[lay]).any().item() for lay in (0, 1)],
        }
        assert sum(changed["ov"]) == (kind == "ov") and (
            kind != "ov" or changed["ov"][a.meta.n_heads + 1]
        )
        assert changed["mlp_in"] == [False, kind == "mlp_in"]
        assert changed["mlp_out"] == [False, kind == "mlp_out"]


@pytest.mark.parametrize("processing", ["raw", "post"])
def test_gqa_edit_changes_only_that_query_head(analyses, processing):
    a = analyses("llama", processing)
    assert a.meta.n_kv_heads < a.meta.n_heads
    head = 1  # shares W_V with head 0
    new = process(edited_raw(a, [Edit("ov", 0, head, 0)]), processing)
    assert torch.equal(new.W_V, a.weights.W_V)
    for h in range(a.meta.n_heads):
        same = torch.equal(new.W_O[0, h], a.weights.W_O[0, h])
        assert same == (h != head)
    W0 = _dense(a.weights, "ov", 0, head)
    U, S, Vh = torch.linalg.svd(W0)
    dense = W0 - S[0] * torch.outer(U[:, 0], Vh[0])
    assert torch.allclose(_dense(new, "ov", 0, head), dense, atol=1e-6 * float(W0.abs().max()))


@pytest.mark.parametrize("arch", ARCHS)
def test_scaling_multiplies_one_singular_value(analyses, arch):
    a = analyses(arch, "post")
    for scale in (0.5, 2.0):
        new = process(edited_raw(a, [Edit("mlp_in", 0, None, 1, scale)]), "post")
        S0 = torch.linalg.svdvals(_dense(a.weights, "mlp_in", 0, None))
        S1 = torch.linalg.svdvals(_dense(new, "mlp_in", 0, None))
        want = S0.clone()
        want[1] *= scale
        assert torch.allclose(S1, want.sort(descending=True).values, rtol=1e-5)


def test_several_edits_of_one_matrix_compose(analyses):
    a = analyses("gpt2", "post")
    edits = EditSet.parse("ov:0:3:0,ov:0:3:4,ov:1:0:1")
    new = process(edited_raw(a, edits), "post")
    W0 = _dense(a.weights, "ov", 0, 3)
    U, S, Vh = torch.linalg.svd(W0)
    dense = W0 - S[0] * torch.outer(U[:, 0], Vh[0]) - S[4] * torch.outer(U[:, 4], Vh[4])
    assert torch.allclose(_dense(new, "ov", 0, 3), dense, atol=1e-6 * float(W0.abs().max()))


# --------------------------------------------------------------------------- specs


def test_edit_set_values():
    s = EditSet.parse("ov:0:1:3, mlp_in:2:5*0.5")
    assert s.edits == (Edit("ov", 0, 1, 3), Edit("mlp_in", 2, None, 5, 0.5))
    assert EditSet.parse(s.spec()) == s
    s2 = s.add(Edit("ov", 0, 1, 3, 2.0))
    assert len(s2) == 2 and s2.edits[-1].scale == 2.0 and len(s) == 2
    assert s2.undo().edits == (Edit("mlp_in", 2, None, 5, 0.5),)
    assert EditSet.from_components([("ov", 0, 1, 3), ("mlp_out", 1, None, 0)]).spec() == (
        "ov:0:1:3,mlp_out:1:0"
    )
    with pytest.raises(AttributeError):
        s.edits = ()  # type: ignore[misc]


def test_adding_many_edits_at_once_is_adding_them_one_by_one():
    # Against the plain definition: each edit replaces any edit of its direction and
    # goes last. Keys repeat within a call and across the old set.
    g = torch.Generator().manual_seed(4)

    def edits(n: int) -> list[Edit]:
        idx = torch.randint(0, 4, (n, 2), generator=g).tolist()
        return [Edit("ov", 0, h, i, float(j % 3)) for j, (h, i) in enumerate(idx)]

    for _ in range(20):
        old, new = EditSet(tuple(EditSet().add(*edits(6)).edits)), edits(9)
        want = list(old.edits)
        for e in new:
            want = [o for o in want if o.key != e.key] + [e]
        assert old.add(*new).edits == tuple(want)


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "at least one"),
        ("ov:0:1", "write ov:LAYER:HEAD:INDEX"),
        ("mlp_in:0:1:2", "write mlp_in:LAYER:INDEX"),
        ("qk:0:1:2", "Cannot edit 'qk'"),
        ("ov:0:a:1", "Cannot read"),
        ("ov:0:1:-1", "count from 0"),
        ("ov:0:1:1*3", "between 0 and 2"),
        ("ov;0;1;1", "Cannot read"),
    ],
)
def test_malformed_specs_say_what_to_write(text, message):
    with pytest.raises(SpecError, match=message):
        EditSet.parse(text)


@pytest.mark.parametrize(
    "edit,message",
    [
        (Edit("ov", 5, 0, 0), "Layer 5 is out of range"),
        (Edit("ov", 0, 4, 0), "Head 4 is out of range"),
        (Edit("ov", 0, 0, 16), "has no direction 16"),
        (Edit("mlp_in", 0, None, 64), "has no direction 64"),
        (Edit("mlp_gate", 0, None, 0), "has no gate"),
    ],
)
def test_edits_the_model_lacks_are_refused(analyses, edit, message):
    with pytest.raises(SpecError, match=message):
        validate(analyses("gpt2", "post"), [edit])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_matrix_is_decomposed_once_per_analysis(checkpoints, tmp_path, arch, monkeypatch):
    """A later edit set of a matrix reuses its exact vectors: the same updates, and no
    new decomposition; the kept vectors are a dense float64 SVD's (up to sign)."""
    import core.edit.rank_one as rank_one
    from tests.core.edit.conftest import open_checkpoint

    a = open_checkpoint(checkpoints[arch], "post", tmp_path)  # its own, empty memo
    made: list[tuple[str, int, int | None]] = []
    real = rank_one.exact_vectors

    def counted(analysis, kind, layer, head):
        made.append((kind, layer, head))
        return real(analysis, kind, layer, head)

    monkeypatch.setattr(rank_one, "exact_vectors", counted)
    edits = [Edit("mlp_out", 0, None, 1), Edit("ov", 0, 2, 0)]
    first = rank_one_updates(a, edits)
    again = rank_one_updates(a, edits)
    rank_one_updates(a, [Edit("mlp_out", 0, None, 3)])
    assert made == [("mlp_out", 0, None), ("ov", 0, 2)]
    for u, v in zip(first, again, strict=True):
        assert u.target == v.target
        assert torch.equal(u.left, v.left) and torch.equal(u.right, v.right)
    kept = a._exact_memo.get(("mlp_out", 0, None), lambda: pytest.fail("not kept"))
    _, S, Vh = torch.linalg.svd(_dense(a.weights, "mlp_out", 0, None))
    r = int((1e-6 * S[0] < S).sum())
    cos = (kept[:, :r] * Vh[:r].T).sum(0).abs()
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-9)
