"""Manifests of any shape: every malformed one is a damaged entry (CacheError), which the
analysis rebuilds; the model folder never is the raw name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.analysis import analysis_from_weights, settings_key
from core.cache import store
from core.cache.manifest import model_folder
from core.errors import CacheError
from core.model.loading import load_model
from core.model.source import raw_weights
from core.settings import Settings


@pytest.fixture(scope="module")
def model(checkpoints: dict[str, Path]):
    m = load_model(Settings(model=str(checkpoints["gpt2"]), device="cpu"))
    return m, raw_weights(m)


def _build(model, cache: Path):
    m, raw = model
    return analysis_from_weights(raw, m.tokenizer, Settings(device="cpu", cache_dir=cache))


def _set(path: str, value: Any):
    """A change to the manifest at ``path`` (``a.b.c``; ``DEL`` deletes it)."""

    def change(info: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        node = info
        for p in parents:
            node = node[p] if isinstance(node, dict) else node[int(p)]
        if value == "DEL":
            del node[last]
        else:
            node[last] = value
        return info

    return change


def _file(info: dict[str, Any], **change: Any) -> dict[str, Any]:
    """``info`` with one field of its first file's record changed (names hold dots)."""
    info["files"][next(iter(info["files"]))].update(change)
    return info


def _first_kind(info: dict[str, Any]) -> str:
    return next(iter(info["kinds"]))


CASES = {
    "a list": lambda info: [],
    "a string": lambda info: "meta",
    "null": lambda info: None,
    "no kinds": _set("kinds", "DEL"),
    "empty kinds": _set("kinds", {}),
    "kinds a list": _set("kinds", ["ov"]),
    "k a string": _set("k", "50"),
    "model a list": _set("model", []),
    "files a list": _set("files", []),
    "size a string": lambda info: _file(info, size="1"),
    "sha256 a number": lambda info: _file(info, sha256=7),
    "file outside": lambda info: {
        **info, "files": {"../../x": {"size": 1, "sha256": "0" * 64}, **info["files"]}
    },
    "kind file unlisted": lambda info: _set(f"kinds.{_first_kind(info)}.file", "nope")(info),
    "components flat": lambda info: _set(f"kinds.{_first_kind(info)}.components", [0, 1])(info),
    "n_projected null": lambda info: _set(f"kinds.{_first_kind(info)}.n_projected", None)(info),
    "model fields wrong": _set("model.surprise", 1),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_manifest_is_a_damaged_entry_and_rebuilt(model, tmp_path: Path, case) -> None:
    a = _build(model, tmp_path)
    path = store.entry_dir(tmp_path, a.meta, "post") / "meta.json"
    path.write_text(json.dumps(CASES[case](json.loads(path.read_text()))))
    with pytest.raises(CacheError):
        store.load(tmp_path, a.meta, "post", settings_key(a.settings))
    store.list_entries(tmp_path)  # the overview's listing skips it, no exception
    rebuilt = _build(model, tmp_path)
    assert not rebuilt.from_cache and set(rebuilt.svd.kinds) == set(a.svd.kinds)
    assert _build(model, tmp_path).from_cache


def test_model_folder_is_a_hash_not_the_name() -> None:
    names = ["..", ".", "default", "models/demo-gpt2", "/abs/models/demo-gpt2", "a" * 5000]
    folders = [model_folder(n) for n in names]
    assert len(set(folders)) == len(names)  # distinct names, distinct folders
    for n, f in zip(names, folders):
        assert f != n and "/" not in f and "." not in f and len(f) <= 57
    assert model_folder("models/demo-gpt2").startswith("demo-gpt2-")
