"""Edits: spectra and products against dense references (raw and post, three
architectures, GQA), scaling, several edits, session isolation, bad specs, export."""

from __future__ import annotations

import pytest
import torch

from core.analysis import Analysis, open_analysis
from core.edit.compare import compare
from core.edit.hf import apply_edits, export, plain_model
from core.edit.rank_one import Edit, EditSet, edited_weights, validate
from core.errors import SpecError
from core.model.weights import process
from core.settings import Settings
from tests.core import reference as ref

ARCHS = ("gpt2", "neox", "llama")


@pytest.fixture(scope="module")
def analyses(checkpoints, tmp_path_factory):
    """``get(arch, processing)``: one analysis per pair, opened on first use."""
    cache = tmp_path_factory.mktemp("edit-cache")
    made: dict[tuple[str, str], Analysis] = {}

    def get(arch: str, processing: str = "post") -> Analysis:
        if (arch, processing) not in made:
            s = Settings(
                model=str(checkpoints[arch]), processing=processing, device="cpu", cache_dir=cache
            )
            made[arch, processing] = open_analysis(s)
        return made[arch, processing]

    return get


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
        new = process(edited_weights(a, [Edit(kind, 1, head, i)]), processing)
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
    new = process(edited_weights(a, [Edit("ov", 0, head, 0)]), processing)
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
        new = process(edited_weights(a, [Edit("mlp_in", 0, None, 1, scale)]), "post")
        S0 = torch.linalg.svdvals(_dense(a.weights, "mlp_in", 0, None))
        S1 = torch.linalg.svdvals(_dense(new, "mlp_in", 0, None))
        want = S0.clone()
        want[1] *= scale
        assert torch.allclose(S1, want.sort(descending=True).values, rtol=1e-5)


def test_several_edits_of_one_matrix_compose(analyses):
    a = analyses("gpt2", "post")
    edits = EditSet.parse("ov:0:3:0,ov:0:3:4,ov:1:0:1")
    new = process(edited_weights(a, edits), "post")
    W0 = _dense(a.weights, "ov", 0, 3)
    U, S, Vh = torch.linalg.svd(W0)
    dense = W0 - S[0] * torch.outer(U[:, 0], Vh[0]) - S[4] * torch.outer(U[:, 4], Vh[4])
    assert torch.allclose(_dense(new, "ov", 0, 3), dense, atol=1e-6 * float(W0.abs().max()))


@pytest.mark.parametrize("processing", ["raw", "post"])
@pytest.mark.parametrize("arch", ARCHS)
def test_hf_copy_holds_the_edited_weights(analyses, arch, processing):
    """The edited HF module's own parameters, read independently, are the edited view."""
    a = analyses(arch, processing)
    edits = [Edit(k, 1, 2 if k == "ov" else None, 0) for k in _kinds(a)]
    hf = apply_edits(a, edits).model
    new = edited_weights(a, edits)
    for kind in _kinds(a):
        got = ref.ov_matrix(hf, 1, 2) if kind == "ov" else ref.mlp_matrix(hf, kind, 1)
        want = _dense(new, kind, 1, 2 if kind == "ov" else None)
        assert torch.allclose(got, want, atol=1e-6), kind


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def test_shared_model_is_never_written(analyses, tmp_path):
    a = analyses("llama", "post")
    shared = a.model.hf_model
    before = _snapshot(shared)
    raw_before = a.raw.W_O.clone(), a.raw.W_in.clone()
    ids = torch.tensor([[3, 17, 40, 41, 99]])
    with torch.no_grad():
        logits0 = plain_model(a)(input_ids=ids).logits
        edited = apply_edits(
            a, EditSet.parse("ov:0:1:0,ov:1:3:2,mlp_in:0:0,mlp_gate:1:3,mlp_out:1:2")
        )
        logits1 = edited.model(input_ids=ids).logits
        export(a, edited.edits, tmp_path / "out")
        # "Another session" reads the original object: it sees the original weights.
        after = _snapshot(shared)
        logits2 = plain_model(a)(input_ids=ids).logits
    assert (logits1 - logits0).abs().max() > 1e-4
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(logits0, logits2)
    assert torch.equal(a.raw.W_O, raw_before[0]) and torch.equal(a.raw.W_in, raw_before[1])


def test_export_reloads_as_the_edited_model(analyses, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a = analyses("gpt2", "post")
    edits = EditSet.parse("ov:1:2:0,mlp_out:0:1*0.5")
    out = export(a, edits, tmp_path / "edited")
    assert (out / "svd_lens_edits.json").is_file()
    re = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok("the fire burned with hot")["input_ids"]])
    with torch.no_grad():
        want = apply_edits(a, edits).model(input_ids=ids).logits
        assert torch.allclose(re(input_ids=ids).logits, want, atol=1e-5)
    with pytest.raises(SpecError, match="not empty"):
        export(a, edits, out)


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


@pytest.mark.parametrize("kind", ["mlp_out", "mlp_gate"])
def test_compare_mlp_removed_and_scaled(analyses, kind):
    a = analyses("llama", "raw")
    c = compare(a, [Edit(kind, 0, None, 0), Edit(kind, 0, None, 2, 0.25)], kind, 0, None, n=5)
    assert c.matches[0].after_index is None
    assert c.matches[2].s_after == pytest.approx(0.25 * c.matches[2].s_before, rel=1e-4)
    for m in (c.matches[1], c.matches[3], c.matches[4]):
        assert abs(m.cosine) > 0.999 and m.s_after == pytest.approx(m.s_before, rel=1e-4)
