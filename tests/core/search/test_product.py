"""The index product gives the same numbers by torch's half-precision kernels and by the
float32 blocks used where the CPU has no native half-precision route, and both equal a
float64 reference of the rounded inputs, rounded as the index's precision rounds."""

from __future__ import annotations

import pytest
import torch

from core.search import product
from core.search.product import index_product


def _route(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(product, "native_half", lambda dtype, device: native)


def _reference(vectors: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """float64 ``(vectors @ cols)^T`` of the inputs as the index's precision holds them."""
    c = cols.to(vectors.dtype).double()
    return (c.T @ vectors.double().T).to(vectors.dtype).double()


def _ulps(x: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """|x - ref| in units of ``dtype``'s spacing at ``ref``."""
    spacing = ref.abs().clamp_min(1e-30) * torch.finfo(dtype).eps
    return (x.double() - ref).abs() / spacing


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("native", [True, False])
def test_both_routes_equal_a_float64_reference(monkeypatch, dtype, native) -> None:
    # Several upcast blocks and a ragged tail.
    monkeypatch.setattr(product, "_BLOCK_ELEMS", 64 * 300)
    _route(monkeypatch, native)
    g = torch.Generator().manual_seed(1)
    vectors = torch.nn.functional.normalize(torch.randn(1000, 64, generator=g), dim=1).to(dtype)
    cols = torch.randn(64, 3, generator=g)
    out = index_product(vectors, cols)
    assert out.dtype == torch.float32 and out.shape == (3, 1000)
    ref = _reference(vectors, cols)
    # Accumulation order may move a value across one rounding boundary, no further.
    assert float(_ulps(out, ref, dtype).max()) <= 1.0
    # Rounded as the index's precision rounds: every value is one that precision holds.
    assert torch.equal(out.to(dtype).float(), out)


def test_routes_agree_on_float32_rows(monkeypatch) -> None:
    g = torch.Generator().manual_seed(2)
    vectors, cols = torch.randn(50, 16, generator=g), torch.randn(16, 2, generator=g)
    outs = []
    for native in (True, False):
        _route(monkeypatch, native)
        outs.append(index_product(vectors, cols))
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(outs[0], (vectors.double() @ cols.double()).T.float())


def test_the_cpu_check_is_a_bool_and_the_gpu_is_native() -> None:
    assert isinstance(product._cpu_native(torch.bfloat16), bool)
    assert product._cpu_native(torch.float32) is False
    assert product.native_half(torch.bfloat16, torch.device("cuda")) is True
