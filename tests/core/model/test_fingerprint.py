"""The checkpoint fingerprint changes with the files that shape a cache entry."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json"])
def test_fingerprint_follows_small_files(
    checkpoints: dict[str, Path], tmp_path: Path, name
) -> None:
    import shutil

    from core.model.fingerprint import fingerprint

    d = tmp_path / "ck"
    shutil.copytree(checkpoints["gpt2"], d)
    before = fingerprint(d)
    assert before is not None and fingerprint(d) == before
    (d / name).write_text((d / name).read_text() + " ")
    assert fingerprint(d) != before
    assert fingerprint(tmp_path / "missing") is None
