"""The GGUF path on a tiny llama GGUF written here with the ``gguf`` package.

Float weights -> Q4_1 (embedding Q8_0) GGUF -> :func:`core.model.gguf.dequantize_to_hf`
-> plain safetensors, compared with the float weights they were written from: every
weight within half a quantization step of its block, and the noise table's std equal
to the rms of the actual rounding error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from core.model.gguf import dequantize_to_hf, hf_name, quant_noise  # noqa: E402

CFG = dict(n_layers=2, d_model=128, n_heads=4, n_kv=2, d_mlp=96, vocab=96)  # d_head 32: one block


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's converter interleaves the rotary halves of Q and K rows per head;
    # transformers undoes it on load, so the test writes them the way real files are.
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _float_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = CFG
    d, dh = c["d_model"], c["d_model"] // c["n_heads"]
    out: dict[str, np.ndarray] = {
        "token_embd.weight": rng.normal(0, 0.05, (c["vocab"], d)),
        "output_norm.weight": 1 + 0.1 * rng.normal(size=d),
    }
    for i in range(c["n_layers"]):
        out[f"blk.{i}.attn_norm.weight"] = 1 + 0.1 * rng.normal(size=d)
        out[f"blk.{i}.ffn_norm.weight"] = 1 + 0.1 * rng.normal(size=d)
        out[f"blk.{i}.attn_q.weight"] = rng.normal(0, 0.1, (d, d))
        out[f"blk.{i}.attn_k.weight"] = rng.normal(0, 0.1, (c["n_kv"] * dh, d))
        out[f"blk.{i}.attn_v.weight"] = rng.normal(0, 0.1, (c["n_kv"] * dh, d))
        out[f"blk.{i}.attn_output.weight"] = rng.normal(0, 0.1, (d, d))
        out[f"blk.{i}.ffn_gate.weight"] = rng.normal(0, 0.1, (c["d_mlp"], d))
        out[f"blk.{i}.ffn_up.weight"] = rng.normal(0, 0.1, (c["d_mlp"], d))
        out[f"blk.{i}.ffn_down.weight"] = rng.normal(0, 0.1, (d, c["d_mlp"]))
    return {k: v.astype(np.float32) for k, v in out.items()}


def _write_gguf(path: Path, weights: dict[str, np.ndarray]) -> None:
    c = CFG
    Q = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c["n_layers"])
    w.add_context_length(64)
    w.add_embedding_length(c["d_model"])
    w.add_feed_forward_length(c["d_mlp"])
    w.add_head_count(c["n_heads"])
    w.add_head_count_kv(c["n_kv"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(c["vocab"])
    for name, arr in weights.items():
        if arr.ndim == 1:
            w.add_tensor(name, arr)
            continue
        if name.endswith("attn_q.weight"):
            arr = _permute(arr, c["n_heads"])
        elif name.endswith("attn_k.weight"):
            arr = _permute(arr, c["n_kv"])
        qtype = Q.Q8_0 if name.startswith("token_embd") else Q.Q4_1
        w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _step(w: np.ndarray, qtype: str) -> np.ndarray:
    """Quantization step ``d`` of each weight's block, from the float weights."""
    b = w.reshape(w.shape[0], -1, 32)
    d = (b.max(-1) - b.min(-1)) / 15 if qtype == "Q4_1" else np.abs(b).max(-1) / 127
    return np.repeat(d, 32, axis=1).reshape(w.shape)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, np.ndarray], Path, Path]:
    root = tmp_path_factory.mktemp("gguf")
    weights = _float_weights(np.random.default_rng(0))
    path = root / "tiny.Q4_1.gguf"
    _write_gguf(path, weights)
    out = root / "hf"
    dequantize_to_hf(path, out, tokenizer=False)
    return weights, path, out


def test_dequantized_weights_match_the_floats_within_half_a_step(built) -> None:
    from safetensors.torch import load_file

    weights, _, out = built
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert cfg["num_key_value_heads"] == CFG["n_kv"] and cfg["num_hidden_layers"] == 2
    sd = load_file(str(out / "model.safetensors"))
    for name, w in weights.items():
        key = hf_name(name)
        assert key is not None and key in sd, name
        got = sd[key].double().numpy()
        assert got.shape == w.shape, name
        if w.ndim == 1:
            np.testing.assert_allclose(got, w, rtol=0, atol=1e-7)
            continue
        qtype = "Q8_0" if name.startswith("token_embd") else "Q4_1"
        step = _step(w.astype(np.float64), qtype)
        # fp16 storage of the scale and minimum adds a little on top of half a step.
        slack = 0.02 * step + 1e-3 * np.abs(w).max()
        err = np.abs(got - w)
        assert (err <= step / 2 + slack).all(), f"{name}: max err/step {np.max(err / step):.3f}"
        # A real quantization happened (the comparison is not trivially exact).
        assert err.max() > 0.1 * step.max(), name


def test_noise_table_is_the_rms_rounding_error(built) -> None:
    from safetensors.torch import load_file

    weights, path, out = built
    table = quant_noise(path)
    assert (table["n_heads"], table["n_kv_heads"]) == (CFG["n_heads"], CFG["n_kv"])
    sd = load_file(str(out / "model.safetensors"))
    for name, w in weights.items():
        e = table["tensors"][hf_name(name)]
        if w.ndim == 1:
            assert e["sigma"] == 0.0
            continue
        actual = float(np.sqrt(np.mean((sd[hf_name(name)].double().numpy() - w) ** 2)))
        assert e["sigma"] == pytest.approx(actual, rel=0.15), name
    v = table["tensors"]["model.layers.0.self_attn.v_proj.weight"]
    o = table["tensors"]["model.layers.0.self_attn.o_proj.weight"]
    assert len(v["head_sigma"]) == CFG["n_kv"] and len(o["head_sigma"]) == CFG["n_heads"]


def test_stamp_matches_only_the_recorded_hashes(tmp_path: Path) -> None:
    import dataclasses

    from core.model import embedded
    from core.model.gguf import STAMP_FILE, WEIGHTS_FILE, sha256_file, stamp_ok

    entry = dataclasses.replace(embedded.SMOLLM2, directory=tmp_path)
    assert not stamp_ok(entry)  # missing
    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights")
    stamp = {
        "gguf_sha256": entry.gguf.sha256,
        "safetensors_sha256": sha256_file(tmp_path / WEIGHTS_FILE),
    }
    (tmp_path / STAMP_FILE).write_text(json.dumps(stamp))
    assert stamp_ok(entry)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"changed")
    assert not stamp_ok(entry)  # the weights changed since the build
    other = dataclasses.replace(entry, gguf=dataclasses.replace(entry.gguf, sha256="0" * 64))
    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights")
    assert stamp_ok(entry) and not stamp_ok(other)  # a new pinned GGUF means a rebuild
