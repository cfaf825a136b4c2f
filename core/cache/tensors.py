"""Tensors parsed from safetensors bytes already in memory, without a second copy.

``safetensors.torch.load`` copies every tensor out of the bytes it is given, so a cache
read held each file twice (SmolLM2-135M: about 1 GB for a 575 MB entry) and spent a
third of a cached answer in the copy. Here each tensor is a view of the one private
buffer the file was read into (:func:`core.cache.store._read_file`): no memory map, so a
file truncated or rewritten later still cannot fault the process or change the values.
"""

from __future__ import annotations

import json
import mmap
import struct

import torch
from torch import Tensor

#: safetensors dtype names.
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def tensors_from_buffer(buf: bytearray | mmap.mmap) -> dict[str, Tensor]:
    """The tensors of a safetensors file held in ``buf``, each a view of ``buf``.

    Raises:
        ValueError: ``buf`` is not a well-formed safetensors file (a bad header, an
            unknown dtype, a shape that does not fit its byte range, a range outside
            the data).
    """
    if len(buf) < 8:
        raise ValueError("shorter than a safetensors header")
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > len(buf) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(bytes(buf[8 : 8 + n]))
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    start = 8 + n
    size = len(buf) - start
    out: dict[str, Tensor] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES[spec["dtype"]]
        shape = [int(s) for s in spec["shape"]]
        a, b = (int(x) for x in spec["data_offsets"])
        itemsize = torch.empty(0, dtype=dtype).element_size()
        count = 1
        for s in shape:
            count *= s
        if not 0 <= a <= b <= size or b - a != count * itemsize:
            raise ValueError(f"tensor {name} does not fit its byte range")
        if count == 0:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(buf, dtype=dtype, count=count, offset=start + a)
        out[name] = flat.reshape(shape)
    return out
