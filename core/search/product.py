"""The one product every query pays: the index's half-precision rows times a few columns.

Torch multiplies bfloat16 (float16) matrices fast only where its CPU kernels have a
native route (oneDNN, on CPUs with AVX-512). Elsewhere (an AVX2-only CPU) it falls back
to a generic loop: on the 2-core AVX2 machine of 2026-12-06 a SmolLM2-135M index
(69,120 x 576) times 51 columns took 2.07 s in bfloat16 against 63 ms upcast to float32
block by block. :func:`index_product` takes the native route where torch has one and
otherwise upcasts blocks of rows, rounding the inputs and the result as the native route
does, so the scores a query is ranked by do not depend on the machine.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float
from torch import Tensor

#: Elements of one upcast block of index rows (16 MiB of float32): it stays in cache
#: while its product is taken, and a whole-index upcast (160 MB for SmolLM2-135M, 1.5 GB
#: for GPT-2 XL) is never held.
_BLOCK_ELEMS = 1 << 22


@functools.cache
def _cpu_native(dtype: torch.dtype) -> bool:
    """Whether torch's CPU matmul has a native route for ``dtype`` on this CPU (the
    check its own dispatch makes).
    """
    check = {
        torch.bfloat16: "_is_mkldnn_bf16_supported",
        torch.float16: "_is_mkldnn_fp16_supported",
    }.get(dtype)
    try:
        return check is not None and bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):  # a torch without the check: assume none
        return False


def native_half(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``dtype`` products on ``device`` run natively (always on a GPU)."""
    return device.type != "cpu" or _cpu_native(dtype)


def index_product(
    vectors: Float[Tensor, "m d_model"], cols: Float[Tensor, "d_model c"]
) -> Float[Tensor, "c m"]:
    """``(vectors @ cols)^T`` in float32: one row per column, contiguous (each column's
    scores are reduced on their own).

    Half-precision ``vectors`` are multiplied in their precision: ``cols`` rounded to
    it, products accumulated in float32, the result rounded to it (what torch's native
    kernels give); without a native route the same numbers come from float32 blocks.
    """
    if vectors.dtype == torch.float32:
        return cols.T.float() @ vectors.T
    half = vectors.dtype
    c_half = cols.T.to(half)
    if native_half(half, vectors.device):
        # cols^T vectors^T: for a few columns CPU kernels run this orientation about
        # twice as fast as vectors @ cols in bfloat16.
        return (c_half @ vectors.T).float()
    c32 = c_half.float()
    m, d = vectors.shape
    out = torch.empty(c32.shape[0], m, device=vectors.device)
    step = max(1, _BLOCK_ELEMS // max(d, 1))
    for s in range(0, m, step):
        out[:, s : s + step] = c32 @ vectors[s : s + step].float().T
    return out.to(half).float()
