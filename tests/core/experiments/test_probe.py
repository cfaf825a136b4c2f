"""The per-layer probe: residual streams against HF's own hidden states, near-perfect
recovery of the input token at layer 0, chance on scrambled embeddings."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from core.edit.hf import plain_model
from core.errors import SpecError
from core.experiments.probe import fit_probe, probe_layers, residual_streams

V, T, N = 40, 32, 48  # classes, window length, windows


def _ids(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (N, T), generator=g)


def test_residual_streams_are_the_block_inputs(analyses, checkpoints):
    from transformers import AutoModelForCausalLM

    a = analyses("llama", "raw")
    ids = _ids()[:2]
    got = residual_streams(plain_model(a), ids)
    hf = AutoModelForCausalLM.from_pretrained(checkpoints["llama"]).eval()
    seen: list[torch.Tensor] = []
    # Plain reference: each decoder layer's input, caught by a pre-hook.
    handles = [
        layer.register_forward_pre_hook(
            lambda m, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True,
        )
        for layer in hf.model.layers
    ]
    with torch.no_grad():
        hf(ids)
    for h in handles:
        h.remove()
    assert got.shape == (len(hf.model.layers), 2, T, hf.config.hidden_size)
    for layer, ref in enumerate(seen):
        assert torch.allclose(got[layer], ref.float(), atol=1e-5), layer


def test_layer_zero_recovers_the_input_token(analyses):
    # Bound: with V = 40 classes in d_model = 64 and distinct random embeddings, the
    # token is linearly decodable from the embedding output: held-out top-1 >= 0.9.
    a = analyses("gpt2", "raw")
    res = probe_layers(plain_model(a), _ids(), a.weights.W_E, layers=[0], max_classes=V)
    assert res.top1[0] >= 0.9 and res.top10[0] >= res.top1[0]
    assert res.chance < 0.2 and res.n_test > 0 and res.n_classes == V
    # The class vectors point along their tokens' embeddings, unlike shuffled ones.
    assert res.embed_cosine[0] > res.embed_cosine_shuffled[0] + 0.2


def test_previous_token_is_not_in_the_embedding(analyses):
    a = analyses("gpt2", "raw")
    res = probe_layers(plain_model(a), _ids(), a.weights.W_E, layers=[0], previous=True)
    assert res.top1[0] <= res.chance + 0.1


def test_scrambled_embedding_per_position_gives_chance():
    # Each position has its own permutation of the embedding table: a vector no longer
    # names one token. Chance here is the best any function of the vector can do: for
    # each vector, its most frequent token (a few percent above 1/V by multiplicity).
    g = torch.Generator().manual_seed(3)
    W_E = torch.randn(V, 64, generator=g)
    ids = _ids(1)
    perms = torch.stack([torch.randperm(V, generator=g) for _ in range(T)])  # [T, V]
    X = W_E[perms[torch.arange(T)[None, :].expand(N, T), ids]]  # [N, T, d]
    train = torch.zeros(N, T, dtype=torch.bool)
    train[: 3 * N // 4] = True
    top1, _, _, _ = fit_probe(X.reshape(-1, 64), ids.reshape(-1), train.reshape(-1))
    shown = perms[torch.arange(T)[None, :].expand(N, T), ids]  # which vector each position got
    joint = torch.zeros(V, V)
    joint.index_put_((shown.reshape(-1), ids.reshape(-1)), torch.ones(N * T), accumulate=True)
    chance = float(joint.max(dim=1).values.sum()) / (N * T)
    assert chance < 0.2
    assert top1 <= chance + 0.03
    # The same data unscrambled is decodable: the test can fail.
    top1_plain, _, _, _ = fit_probe(W_E[ids].reshape(-1, 64), ids.reshape(-1), train.reshape(-1))
    assert top1_plain >= 0.95


def test_too_little_text_is_refused(analyses):
    a = analyses("gpt2", "raw")
    with pytest.raises(SpecError):
        probe_layers(plain_model(a), _ids()[:1], a.weights.W_E)


def test_layer_zero_on_the_trained_demo_model(tmp_path, capsys):
    """A trained model: the embedded demo GPT-2 (4 layers, d_model 256), through the CLI on
    its held-out reference windows. Bound: layer 0's input is the token's embedding plus a
    position vector, and 100 classes in 256 dimensions are linearly separable unless the
    position vectors swamp the embeddings, so held-out top-1 >= 0.85 (the README's run
    gives 0.922; the misses are classes seen only a few times in training); and far above
    the most-frequent-class chance."""
    import json

    from core.cli.main import main

    args = ["probe", "--model", "default", "--layers", "0", "--cache-dir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["n_classes"] == 100 and row["n_test"] > 200
    assert row["top1"] >= 0.85 and row["top1"] > row["chance"] + 0.5
    assert row["embed_cosine"] > row["embed_cosine_shuffled"] + 0.5


class _SinkModel:
    """A model whose one block input is the token's embedding, except at each window's
    first position, where it is one huge vector whatever the token (an attention sink's
    massive activation, as SmolLM2-135M has from layer 12 on)."""

    def __init__(self, W_E: torch.Tensor, sink: float) -> None:
        self.W_E, self.sink = W_E, sink

    def __call__(self, ids: torch.Tensor, output_hidden_states: bool) -> Any:
        h = self.W_E[ids].clone()
        h[:, 0] = self.sink * torch.ones(self.W_E.shape[1])
        return SimpleNamespace(hidden_states=(h, h))


@pytest.mark.parametrize("previous", [False, True])
def test_window_starts_are_left_out(previous):
    g = torch.Generator().manual_seed(5)
    W_E = torch.randn(V, 64, generator=g)
    ids = _ids(2)
    res = probe_layers(_SinkModel(W_E, 1e4), ids, W_E, layers=[0], previous=previous)
    # Both modes read positions 1 .. T-1, so both hold out the same positions.
    assert res.n_train + res.n_test == N * (T - 1)
    # Plain reference: sklearn's own fit on those positions alone, same split and scale.
    from sklearn.linear_model import LogisticRegression

    X = W_E[ids[:, 1:]].reshape(-1, 64)
    y = ids[:, (0 if previous else 1) : T - (1 if previous else 0)].reshape(-1)
    train = torch.zeros(N, T - 1, dtype=torch.bool)
    train[: 3 * N // 4] = True
    train = train.reshape(-1)
    X = X / X[train].norm(dim=1).mean()
    clf = LogisticRegression(max_iter=300, random_state=0).fit(X[train].numpy(), y[train].numpy())
    want = float((torch.as_tensor(clf.predict(X[~train].numpy())) == y[~train]).float().mean())
    assert abs(float(res.top1[0]) - want) < 1e-9
    if not previous:
        assert res.top1[0] >= 0.95  # the sink would have cost every window start


class _TwoLayerModel:
    """Block inputs: the token's embedding, then the embedding through a fixed random map
    (so the two layers' probes lie differently against ``W_E``)."""

    def __init__(self, W_E: torch.Tensor, M: torch.Tensor) -> None:
        self.W_E, self.M = W_E, M

    def __call__(self, ids: torch.Tensor, output_hidden_states: bool) -> Any:
        h = self.W_E[ids]
        return SimpleNamespace(hidden_states=(h, h @ self.M, h))


def test_subspace_share_is_the_weight_in_the_embeddings_top_directions():
    import numpy as np

    g = torch.Generator().manual_seed(7)
    W_E = torch.randn(V, 64, generator=g) @ torch.diag(torch.linspace(3, 0.1, 64))
    M = torch.randn(64, 64, generator=g)
    ids = _ids(4)
    res = probe_layers(_TwoLayerModel(W_E, M), ids, W_E, max_classes=V)
    # Plain reference: numpy's SVD of W_E, and the same fit on the same positions.
    Vt = np.linalg.svd(W_E.double().numpy(), full_matrices=False)[2][: 64 // 8]
    train = torch.zeros(N, T - 1, dtype=torch.bool)
    train[: 3 * N // 4] = True
    for layer, X in enumerate((W_E[ids[:, 1:]], W_E[ids[:, 1:]] @ M)):
        coef = fit_probe(X.reshape(-1, 64), ids[:, 1:].reshape(-1), train.reshape(-1))[2]
        c = coef.double().numpy()
        want = float(((c @ Vt.T) ** 2).sum()) / float((c**2).sum())
        assert abs(float(res.subspace_share[layer]) - want) < 1e-4, layer
    assert abs(float(res.subspace_share[0]) - float(res.subspace_share[1])) > 0.05
