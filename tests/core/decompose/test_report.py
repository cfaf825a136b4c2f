"""compare_methods' labeller verdicts: every method and control is judged on both ends of
its first components, and the SVD's token sets are those of a dense SVD of the same rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from core.analysis import analysis_from_weights, settings_key
from core.decompose import DecomposeOptions
from core.decompose.build import rows_and_weights
from core.decompose.report import compare_methods
from core.settings import ENDS, Settings

FAST = DecomposeOptions(n_components=16, n_iter=2, max_rows=200)
N_LABEL, K = 6, 15


@pytest.fixture(scope="module")
def analysis(checkpoints: dict[str, Path], tmp_path_factory):
    from core.model.loading import load_model
    from core.model.source import raw_weights

    m = load_model(Settings(model=str(checkpoints["gpt2"]), device="cpu"))
    s = Settings(model="tiny-gpt2", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))
    return analysis_from_weights(raw_weights(m), m.tokenizer, s)


def test_every_method_is_judged_on_both_ends(analysis) -> None:
    judged: list[list[tuple[str, ...]]] = []

    def judge(sets: Sequence[tuple[str, ...]]) -> list[bool]:
        judged.append(list(sets))
        return [i % 3 == 0 for i in range(len(sets))]

    rep = compare_methods(
        analysis, settings_key(analysis.settings), "mlp_out", 1, FAST, judge, N_LABEL,
        curves=False,
    )  # fmt: skip
    got = {(v.method, v.control, v.end): v for v in rep.interpretable}
    methods = {v.method for v in rep.interpretable}
    assert {"svd", "dictionary", "nmf"} <= methods
    assert set(got) == {(m, c, e) for m in methods for c in (False, True) for e in ENDS}
    assert all(v.n == N_LABEL and v.fraction == pytest.approx(2 / N_LABEL) for v in got.values())
    assert [v["end"] for v in rep.to_json()["interpretable"]] == [v.end for v in rep.interpretable]
    # One judge call per verdict, in the same order; the two ends of a component differ.
    assert len(judged) == len(rep.interpretable)
    sets = {(v.method, v.control, v.end): s for v, s in zip(rep.interpretable, judged, strict=True)}
    for m in methods:
        for c in (False, True):
            tops, bottoms = sets[m, c, "top"], sets[m, c, "bottom"]
            assert all(set(t).isdisjoint(b) for t, b in zip(tops, bottoms, strict=True))

    # The SVD's: a dense SVD of the same rows, read through the analysis's unembedding;
    # which end is "top" is the sign rule's choice, so each pair is compared as a pair.
    X, _, _ = rows_and_weights(analysis, "mlp_out", 1, FAST.weighted)
    Vh = torch.linalg.svd(X.double(), full_matrices=False).Vh[:N_LABEL]
    logits = Vh @ analysis.W_U.double()
    raw = analysis.tokens.raw
    pairs = zip(sets["svd", False, "top"], sets["svd", False, "bottom"], strict=True)
    compared = 0
    for i, (top, bottom) in enumerate(pairs):
        ends = []
        for sign in (1.0, -1.0):
            vals, idx = (sign * logits[i]).topk(K + 1)
            if float(vals[K - 1] - vals[K]) < 1e-4 * float(vals[0]):
                break  # a tie at the K-th token: float32 may pick either
            ends.append(frozenset(raw[j] for j in idx[:K].tolist()))
        else:
            assert {frozenset(top), frozenset(bottom)} == set(ends), i
            compared += 1
    assert compared >= N_LABEL - 1
