"""Mapped reads (a process answering one question): the same bytes as an owned read, the
same checks."""

from __future__ import annotations

import hashlib
import mmap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.cache import reading
from core.cache.tensors import tensors_from_buffer
from core.errors import CacheError


def _entry(tmp_path: Path) -> tuple[Path, dict]:
    t = {"a": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3, 4)}
    save_file(t, tmp_path / "x.safetensors")
    data = (tmp_path / "x.safetensors").read_bytes()
    files = {"x.safetensors": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    return tmp_path, files


def test_mapped_read_equals_an_owned_one(tmp_path: Path) -> None:
    out, files = _entry(tmp_path)
    owned = reading.read_files(out, files, ["x.safetensors"])["x.safetensors"]
    mapped = reading.read_files(out, files, ["x.safetensors"], mapped=True)["x.safetensors"]
    assert isinstance(mapped, mmap.mmap) and isinstance(owned, bytearray)
    assert bytes(mapped[:]) == bytes(owned)
    a, b = tensors_from_buffer(owned), tensors_from_buffer(mapped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    b["a"][0] = 5.0  # a private map: the file keeps its bytes
    assert (out / "x.safetensors").read_bytes() == bytes(owned)


def test_mapped_read_checks_the_hash(tmp_path: Path) -> None:
    out, files = _entry(tmp_path)
    p = out / "x.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    p.write_bytes(bytes(data))
    with pytest.raises(CacheError):
        reading.read_files(out, files, ["x.safetensors"], mapped=True)


def test_mapped_read_trusts_a_stamp_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    out, files = _entry(tmp_path)
    monkeypatch.setattr(reading, "TRUST_AFTER_S", -1.0)  # every file counts as settled
    reading.read_files(out, files, ["x.safetensors"], mapped=True)  # hashed, stamped
    hashed: list[int] = []
    real = reading._digest
    monkeypatch.setattr(reading, "_digest", lambda d: hashed.append(1) or real(d))
    reading.read_files(out, files, ["x.safetensors"], mapped=True)
    assert hashed == []
    p = out / "x.safetensors"
    p.write_bytes(p.read_bytes())  # rewritten: ctime moves
    reading.read_files(out, files, ["x.safetensors"], mapped=True)
    assert hashed == [1]
