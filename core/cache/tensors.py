"""Safetensors files read and written without extra copies.

Reading: tensors parsed from safetensors bytes already in memory, without a second copy.

``safetensors.torch.load`` copies every tensor out of the bytes it is given, so a cache
read held each file twice (SmolLM2-135M: about 1 GB for a 575 MB entry) and spent a
third of a cached answer in the copy. Here each tensor is a view of the one private
buffer the file was read into (:func:`core.cache.store._read_file`): no memory map, so a
file truncated or rewritten later still cannot fault the process or change the values.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
from collections.abc import Mapping
from typing import BinaryIO

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
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
#: Bytes handed to the hash and the file at a time: large enough that both release the
#: GIL for the whole call, small enough to stay in cache between the two.
_CHUNK = 1 << 22


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


def write_tensors(f: BinaryIO, tensors: Mapping[str, Tensor]) -> tuple[int, str]:
    """Write ``tensors`` to ``f`` as a safetensors file; returns the file's size and
    SHA-256.

    ``safetensors.torch.save`` builds the whole file as one ``bytes`` object (two copies
    of every tensor on the way), which was most of a cache write. Here the header goes
    out, then each tensor's own memory, hashed on the way, so no table is held twice. A
    tensor off the CPU or not contiguous is copied first (the cache's tensors are neither).

    Raises:
        ValueError: a tensor's dtype has no safetensors name.
    """
    cpu = {name: tensors[name].detach().cpu().contiguous() for name in sorted(tensors)}
    header: dict[str, dict[str, object]] = {}
    offset = 0
    for name, t in cpu.items():
        if t.dtype not in _NAMES:
            raise ValueError(f"tensor {name} has dtype {t.dtype}, which safetensors cannot store")
        n = t.numel() * t.element_size()
        header[name] = {
            "dtype": _NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format aligns the data to 8 bytes
    h = hashlib.sha256()
    for part in (struct.pack("<Q", len(head)), head):
        h.update(part)
        f.write(part)
    for t in cpu.values():
        if t.numel() == 0:
            continue
        raw = t.reshape(-1).view(torch.uint8).numpy().data
        for i in range(0, len(raw), _CHUNK):
            chunk = raw[i : i + _CHUNK]
            h.update(chunk)
            f.write(chunk)
    return 8 + len(head) + offset, h.hexdigest()
