"""Labelling both ends of a direction: the bottom end of ``v`` is checked against the
top end of ``-v``, projected here with a plain matrix product through ``W_U``."""

from __future__ import annotations

import pytest

from core.errors import SpecError
from core.label.offline import OfflineParams
from core.label.sweep import (
    check_ends,
    label_offline,
    offline_labeller,
    sweep_offline,
    token_sets,
)
from core.random_control import controls
from core.settings import HEAD_KINDS

CONCEPTS = ("fire", "water", "animal", "number", "colour")
K = 8


def _negated_top(a, kind: str, layer: int, head: int | None, n: int, control: bool):
    """The ``K`` tokens with the largest projection of ``-v`` for the first ``n``
    directions ``v`` of one component, strongest first."""
    res = controls(a)[kind] if control else a.svd.kinds[kind]
    d = res.decomposition
    c = d.index(layer, (0 if kind in HEAD_KINDS else None) if control else head)
    out = []
    for i in range(n):
        logits = -(d.directions[c, :, i].double() @ a.W_U.double())
        out.append(tuple(a.tokens.raw[j] for j in logits.topk(K).indices.tolist()))
    return out


@pytest.mark.parametrize(("kind", "head", "control"),
                         [("mlp_in", None, False), ("ov", 1, False), ("mlp_out", None, True)])  # fmt: skip
def test_bottom_end_is_the_top_end_of_the_negated_direction(analyses, kind, head, control) -> None:
    a = analyses("gpt2")
    heads = None if head is None else [head]
    got = list(token_sets(a, kind, [1], 4, K, heads, control, end="bottom"))
    assert [toks for *_, toks in got] == _negated_top(a, kind, 1, head, 4, control)
    top = list(token_sets(a, kind, [1], 4, K, heads, control))
    assert [it[:3] for it in top] == [it[:3] for it in got]
    assert all(set(t[3]).isdisjoint(b[3]) for t, b in zip(top, got))


def test_each_end_is_labelled_as_its_tokens(analyses) -> None:
    a = analyses("gpt2")
    lab = offline_labeller(a, OfflineParams(null_sets=50), concepts=CONCEPTS)
    out = sweep_offline(a, ("mlp_in",), layers=[0, 1], n=3, k=K, control=True, labeller=lab)
    assert len(out) == 2 * 2 * 2 * 3  # (real + control) x 2 ends x 2 layers x 3 directions
    bottom = {(r.layer, r.index, r.control): r for r in out if r.end == "bottom"}
    for control in (False, True):
        for layer in (0, 1):
            reference = _negated_top(a, "mlp_in", layer, None, 3, control)
            for i, toks in enumerate(reference):
                r = bottom[layer, i, control]
                want = lab.score(toks)
                assert r.tokens == toks and r.score == pytest.approx(want.z)
                assert (r.interpretable, r.label) == (want.interpretable, want.label)
                rec = r.to_record(a.meta.name, a.meta.weights_hash, a.settings)
                assert rec.end == "bottom" and r.to_json()["end"] == "bottom"
                assert (rec.processing, rec.projection) == (
                    a.settings.processing,
                    a.settings.projection,
                )
    only_top = sweep_offline(a, ("mlp_in",), [0], n=2, k=K, control=False, labeller=lab,
                             ends=("top",))  # fmt: skip
    assert [r.end for r in only_top] == ["top", "top"]
    items = list(token_sets(a, "mlp_in", [0], 2, K))
    assert [r.end for r in label_offline(lab, items, "mlp_in")] == ["top", "top"]


def test_check_ends() -> None:
    assert check_ends(["bottom", "top", "top"]) == ("top", "bottom")
    with pytest.raises(SpecError, match="top, bottom or both"):
        check_ends(["middle"])
    with pytest.raises(SpecError, match="none"):
        check_ends([])
