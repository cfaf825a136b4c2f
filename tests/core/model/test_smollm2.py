"""End to end on the real embedded SmolLM2-135M (models/smollm2-135m, built by
``make install``); skipped only when that directory is absent.

References are independent: a plain Hugging Face model loaded from the same directory,
and dense SVDs of W_V W_O built from its state dict (with grouped-query attention done
by hand: query head h reads key/value head h // 3 and its own slice of o_proj).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from core.model import embedded
from tests.core.reference import unembed_as_read

pytestmark = pytest.mark.skipif(
    not embedded.SMOLLM2.built, reason="models/smollm2-135m is not built (run make install)"
)

DIR = embedded.SMOLLM2.directory


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from core.analysis import open_analysis
    from core.settings import Settings

    cache: Path = tmp_path_factory.mktemp("smol-cache")
    settings = Settings(
        model="smollm2-135m", device="cpu", cache_dir=cache, kinds=("ov",), n_project=3, k=10
    )
    return open_analysis(settings)


@pytest.fixture(scope="module")
def plain() -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(DIR), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(DIR))


def test_loads_as_the_registry_describes(analysis) -> None:
    m = analysis.meta
    assert (m.n_layers, m.d_model, m.n_heads, m.n_kv_heads, m.d_head) == (30, 576, 9, 3, 64)
    assert (m.d_mlp, m.d_vocab, m.gated, m.normalization) == (1536, 49152, True, "RMS")


def test_greedy_generation_matches_plain_hf(analysis, plain) -> None:
    model, tok = plain
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        ours = analysis.model.hf_model.generate(ids, max_new_tokens=8, do_sample=False)
        ref = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert ours.tolist() == ref.tolist()
    # And the exported tokenizer adds no BOS of its own.
    assert ids[0, 0].item() != tok.bos_token_id


@pytest.mark.parametrize("head", [0, 4])  # head 4 reads key/value head 1
def test_ov_directions_agree_with_a_dense_svd(analysis, plain, head: int) -> None:
    from core.query import directions

    model, _ = plain
    sd = model.state_dict()
    layer, dh, group = 24, 64, 9 // 3
    pre = f"model.layers.{layer}."
    W_v = sd[pre + "self_attn.v_proj.weight"][(head // group) * dh : (head // group + 1) * dh].T
    W_o = sd[pre + "self_attn.o_proj.weight"][:, head * dh : (head + 1) * dh].T
    g = sd[pre + "input_layernorm.weight"]  # post processing folds it into W_V's rows
    M = (g[:, None] * W_v).double() @ W_o.double()
    _, S, Vh = torch.linalg.svd(M)
    W_U = unembed_as_read(
        sd["model.norm.weight"][:, None] * sd["model.embed_tokens.weight"].T,
        analysis.settings.projection,
    )

    dirs = directions(analysis, "ov", layer, head, n=3, k=10)
    for i, d in enumerate(dirs):
        assert d.singular_value == pytest.approx(float(S[i]), rel=1e-4)
        p = Vh[i] @ W_U
        if p.max() < -p.min():  # the sign rule: the strongest token end is positive
            p = -p
        top = torch.topk(p, 10)
        assert [v for _, _, v in d.top] == pytest.approx(top.values.tolist(), rel=1e-3, abs=1e-4)
        assert {t for t, _, _ in d.top[:5]} == {
            analysis.tokens.raw[j] for j in top.indices[:5].tolist()
        }
