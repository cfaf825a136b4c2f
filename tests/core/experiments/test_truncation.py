"""Truncation curves against truncations made by hand on a plain HF model (raw
processing, dense ``torch.linalg.svd``), and the loss-recovered arithmetic."""

from __future__ import annotations

import pytest
import torch

from core.edit.prompts import reference_ids
from core.errors import SpecError
from core.experiments.truncation import mean_loss, truncation_curve, truncation_sweep
from tests.core import reference as ref

TEXT = "the cat and a dog ran across the green field to the old house by the river " * 4


def _ids(a):
    return reference_ids(a.model.tokenizer, [TEXT], seq_len=24, n_seqs=2)


def _hf(checkpoints, arch):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoints[arch]).eval()


def _hand_loss(hf, ids):
    with torch.no_grad():
        lp = torch.log_softmax(hf(ids).logits.double(), -1)[:, :-1]
    return float(-lp.gather(2, ids[:, 1:, None]).mean())


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_mlp_out_truncation_matches_a_dense_hand_truncation(analyses, checkpoints, arch):
    a = analyses(arch, "raw")
    ids = _ids(a)
    curve = truncation_curve(a, "mlp_out", 1, None, ids, ks=(0, 3, 8), draws=1)
    for k, got in zip(curve.ks.tolist(), curve.loss_svd.tolist()):
        hf = _hf(checkpoints, arch)
        W = ref.xw(ref.module(hf, "mlp_out", 1))  # a view: writing it edits hf
        U, S, Vh = torch.linalg.svd(W.detach().double(), full_matrices=False)
        with torch.no_grad():
            W[:] = (U[:, :k] * S[:k]) @ Vh[:k]
        assert got == pytest.approx(_hand_loss(hf, ids), abs=1e-4), k
    assert curve.loss_orig == pytest.approx(_hand_loss(_hf(checkpoints, arch), ids), abs=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_ov_head_truncation_matches_a_dense_hand_truncation(analyses, checkpoints, arch):
    a = analyses(arch, "raw")
    ids = _ids(a)
    curve = truncation_curve(a, "ov", 0, 1, ids, ks=(2,), draws=0)
    hf = _hf(checkpoints, arch)
    _, _, Vh = torch.linalg.svd(ref.ov_matrix(hf, 0, 1))
    W_O = ref.out_matrix(hf, 0, 1)
    with torch.no_grad():  # W_V W_O' = (W_V W_O) P_k: the top-2 truncation of the OV circuit
        W_O[:] = W_O.double() @ Vh[:2].T @ Vh[:2]
    k2 = curve.ks.tolist().index(2)
    assert float(curve.loss_svd[k2]) == pytest.approx(_hand_loss(hf, ids), abs=1e-4)


def test_recovered_is_one_at_full_rank_and_zero_at_zero(analyses):
    a = analyses("gpt2", "post")
    (curve,) = truncation_sweep(a, "mlp_in", [0], _ids(a), ks=(0, 4), draws=2)
    rec = curve.recovered_svd
    assert curve.ks[0] == 0 and curve.ks[-1] == curve.rank
    assert float(rec[0]) == pytest.approx(0.0) and float(rec[-1]) == pytest.approx(1.0)
    assert curve.recovered_random.shape == (2, len(curve.ks))
    assert curve.loss_zero != curve.loss_orig
    if curve.meaningful:
        assert curve.k_at(1.0) is not None and curve.k_at(1.0) <= curve.rank
    else:  # zeroing hardly changes the loss: no k is claimed
        assert curve.k_at(0.0) is None


def test_k_at_needs_zeroing_to_matter(analyses):
    from dataclasses import replace

    a = analyses("gpt2", "post")
    (curve,) = truncation_sweep(a, "mlp_out", [1], _ids(a), ks=(0, 4), draws=0)
    flat = replace(curve, loss_zero=curve.loss_orig + 0.001)
    steep = replace(curve, loss_zero=curve.loss_orig + 1.0)
    assert not flat.meaningful and flat.k_at(0.0) is None
    assert steep.meaningful and steep.k_at(0.0) == 0


def test_mean_loss_is_the_plain_cross_entropy(analyses, checkpoints):
    a = analyses("neox", "raw")
    ids = _ids(a)
    assert mean_loss(_hf(checkpoints, "neox"), ids) == pytest.approx(
        _hand_loss(_hf(checkpoints, "neox"), ids), abs=1e-5
    )


def test_bad_components_are_refused(analyses):
    a = analyses("gpt2", "post")
    with pytest.raises(SpecError):
        truncation_curve(a, "mlp_in", 0, 2, _ids(a))
    with pytest.raises(SpecError):
        truncation_curve(a, "mlp_gate", 0, None, _ids(a))


@pytest.mark.parametrize(("kind", "ks", "draws"), [("mlp_out", (2, 5, 999), 2), ("ov", (1,), 0)])
def test_the_cost_told_before_a_sweep_counts_its_passes(analyses, monkeypatch, kind, ks, draws):
    import core.experiments.truncation as tr

    a = analyses("gpt2", "post")
    starts: list[int] = []
    real = tr.mean_loss_from

    def counted(model, start, batch=8):
        starts.append(start.layer)
        return real(model, start, batch)

    monkeypatch.setattr(tr, "mean_loss_from", counted)
    layers = [1, 0]
    truncation_sweep(a, kind, layers, _ids(a), ks, draws)
    rank = a.svd.kinds[kind].decomposition.rank
    cost = tr.truncation_cost(ks, rank, draws, layers, a.meta.n_layers)
    assert cost.passes == len(starts) > 0
    n = a.meta.n_layers
    assert cost.whole_passes == pytest.approx(sum(n - layer for layer in starts) / n)
