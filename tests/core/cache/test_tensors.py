"""Safetensors bytes parsed as views of one buffer, and files written in a stream, against
safetensors' own reader."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load, save

from core.cache.tensors import tensors_from_buffer, write_tensors


def _sample() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f64": torch.randn(2, generator=g, dtype=torch.float64),
        "bf16": torch.randn(4, 3, generator=g).bfloat16(),
        "f16": torch.randn(7, generator=g).half(),
        "i32": torch.randint(-9, 9, (2, 2, 3), generator=g, dtype=torch.int32),
        "i64": torch.randint(-9, 9, (5,), generator=g),
        "u8": torch.randint(0, 255, (6,), generator=g, dtype=torch.uint8),
        "bool": torch.rand(5, generator=g) > 0.5,
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(2.5),
    }


def test_equals_the_safetensors_reader() -> None:
    data = save(_sample(), metadata={"note": "x"})
    ref = load(data)
    got = tensors_from_buffer(bytearray(data))
    assert set(got) == set(ref)
    for name, t in ref.items():
        assert got[name].dtype == t.dtype and got[name].shape == t.shape, name
        assert torch.equal(got[name], t), name


def test_tensors_view_the_buffer_without_a_copy() -> None:
    buf = bytearray(save({"a": torch.arange(4, dtype=torch.float32)}))
    t = tensors_from_buffer(buf)["a"]
    buf[-4:] = torch.tensor([9.0]).numpy().tobytes()
    assert t[-1].item() == 9.0


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:5],  # shorter than the header length
        lambda b: b[:-4],  # data cut short
        lambda b: (10**9).to_bytes(8, "little") + b[8:],  # header length past the end
        lambda b: b[:8] + b"[" + b[9:],  # header not JSON
    ],
)
def test_damaged_bytes_are_a_value_error(damage) -> None:
    data = save({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3)})
    with pytest.raises(ValueError):
        tensors_from_buffer(bytearray(damage(data)))


def test_written_file_is_read_back_by_safetensors(tmp_path) -> None:
    sample = _sample() | {"transposed": torch.arange(6.0).reshape(2, 3).T}
    path = tmp_path / "x.safetensors"
    with open(path, "wb") as f:
        size, sha = write_tensors(f, sample)
    data = path.read_bytes()
    assert size == len(data)
    assert sha == hashlib.sha256(data).hexdigest()
    ref = load(data)
    assert set(ref) == set(sample)
    for name, t in sample.items():
        assert ref[name].dtype == t.dtype and ref[name].shape == t.shape, name
        assert torch.equal(ref[name], t), name


def test_a_dtype_safetensors_lacks_is_a_value_error(tmp_path) -> None:
    with open(tmp_path / "x.safetensors", "wb") as f, pytest.raises(ValueError, match="complex"):
        write_tensors(f, {"z": torch.zeros(2, dtype=torch.complex64)})
