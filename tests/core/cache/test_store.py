"""Cache: round trip, corruption and staleness are detected and rebuilt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from core.analysis import analysis_from_weights, settings_key
from core.cache import checkpoint, reading, store
from core.errors import CacheError
from core.model.loading import load_model
from core.model.source import raw_weights
from core.settings import Settings


@pytest.fixture(scope="module")
def model(checkpoints: dict[str, Path]):
    m = load_model(Settings(model=str(checkpoints["llama"]), device="cpu"))
    return m, raw_weights(m)


def _build(model, cache: Path, **kw):
    m, raw = model
    s = Settings(model="tiny-llama", device="cpu", cache_dir=cache, **kw)
    return analysis_from_weights(raw, m.tokenizer, s)


def test_round_trip_is_exact(model, tmp_path: Path) -> None:
    first = _build(model, tmp_path)
    second = _build(model, tmp_path)
    assert not first.from_cache and second.from_cache
    for kind, res in first.svd.kinds.items():
        other = second.svd.kinds[kind]
        d1, d2 = res.decomposition, other.decomposition
        assert d1.components == d2.components
        assert torch.equal(d1.S, d2.S) and torch.equal(d1.directions, d2.directions)
        assert torch.equal(res.tops.top_idx, other.tops.top_idx)
        assert torch.equal(res.tops.bottom_val, other.tops.bottom_val)
        assert torch.equal(d1.degenerate, d2.degenerate)
    files = {p.suffix for p in store.entry_dir(tmp_path, first.meta, "post").iterdir()}
    assert files == {".safetensors", ".json"}


def test_controls_are_built_on_first_use_then_read(model, tmp_path: Path, monkeypatch) -> None:
    import core.query as query
    import core.random_control as ctl
    from core.cache.build import build_controls

    first = _build(model, tmp_path)
    entry = store.entry_dir(tmp_path, first.meta, "post")
    # A precompute leaves the controls out.
    assert not first.svd.controls and not (entry / store.CONTROLS_MANIFEST).exists()
    assert not ctl.controls_ready(first)
    built = ctl.controls(first)
    assert set(built) == set(first.svd.kinds) and ctl.controls_ready(first)
    assert (entry / store.CONTROLS_MANIFEST).is_file()
    ref = build_controls(first.weights, first.settings)
    for kind, res in ref.items():
        assert torch.equal(built[kind].decomposition.S, res.decomposition.S)
        assert torch.equal(built[kind].tops.top_idx, res.tops.top_idx)

    calls: list[int] = []
    monkeypatch.setattr(ctl, "build_controls", lambda *a, **k: calls.append(1) or {})
    second = _build(model, tmp_path)  # a new process would see the same: read, not built
    # Opening the entry does not read the controls; the first use reads them.
    assert second.from_cache and not second.svd.controls and not ctl.controls_ready(second)
    for kind, res in built.items():
        other = query.kind_result(second, kind, control=True)
        assert torch.equal(other.decomposition.S, res.decomposition.S)
        assert torch.equal(other.decomposition.directions, res.decomposition.directions)
        assert torch.equal(other.tops.bottom_idx, res.tops.bottom_idx)
    assert calls == [] and ctl.controls_ready(second)


def test_damaged_controls_are_rebuilt_and_keep_the_entry(model, tmp_path: Path) -> None:
    import core.random_control as ctl

    a = _build(model, tmp_path)
    want = {k: r.decomposition.S for k, r in ctl.controls(a).items()}
    entry = store.entry_dir(tmp_path, a.meta, "post")
    target = entry / "ov.control.safetensors"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CacheError):
        store.load_controls(tmp_path, a.meta, "post", settings_key(a.settings))
    b = _build(model, tmp_path)
    assert b.from_cache and not ctl.controls_ready(b)  # the entry itself still serves
    got = ctl.controls(b)
    assert all(torch.equal(got[k].decomposition.S, s) for k, s in want.items())
    store.load_controls(tmp_path, a.meta, "post", settings_key(a.settings))  # rewritten whole


def test_controls_are_built_once_for_concurrent_sessions(model, tmp_path: Path, monkeypatch):
    import threading

    import core.random_control as ctl

    a = _build(model, tmp_path)
    real, calls = ctl.build_controls, []

    def counted(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(ctl, "build_controls", counted)
    out: list[dict] = []
    threads = [threading.Thread(target=lambda: out.append(ctl.controls(a))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(out) == 4 and all(o is out[0] for o in out)


def test_rebuilding_an_entry_drops_its_old_controls(model, tmp_path: Path) -> None:
    import core.random_control as ctl

    a = _build(model, tmp_path, k=10)
    ctl.controls(a)
    entry = store.entry_dir(tmp_path, a.meta, "post")
    assert (entry / store.CONTROLS_MANIFEST).is_file()
    b = _build(model, tmp_path, k=12)  # other settings: the entry is rebuilt
    assert not b.from_cache and not (entry / store.CONTROLS_MANIFEST).exists()
    assert not ctl.controls_ready(b)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "meta"])
def test_damaged_entry_is_detected_and_rebuilt(model, tmp_path: Path, damage: str) -> None:
    a = _build(model, tmp_path)
    entry = store.entry_dir(tmp_path, a.meta, "post")
    target = entry / "ov.safetensors"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-5] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        (entry / "meta.json").write_text("{ not json")
    with pytest.raises(CacheError):
        store.load(tmp_path, a.meta, "post", settings_key(a.settings))
    rebuilt = _build(model, tmp_path)
    assert not rebuilt.from_cache
    assert torch.equal(rebuilt.svd.kinds["ov"].decomposition.S, a.svd.kinds["ov"].decomposition.S)
    assert _build(model, tmp_path).from_cache


@pytest.mark.parametrize("damage", ["flip", "flip-keep-mtime"])
def test_verified_files_are_trusted_until_touched(
    model, tmp_path: Path, monkeypatch, damage: str
) -> None:
    a = _build(model, tmp_path)
    entry = store.entry_dir(tmp_path, a.meta, "post")
    key = settings_key(a.settings)
    ov_sha = json.loads((entry / "meta.json").read_text())["files"]["ov.safetensors"]["sha256"]
    hashed: list[str] = []  # the digests computed on reads
    real = reading._digest
    monkeypatch.setattr(reading, "_digest", lambda data: hashed.append(real(data)) or hashed[-1])
    # Files written just now are hashed on every read (no stamp yet).
    store.load(tmp_path, a.meta, "post", key)
    store.load(tmp_path, a.meta, "post", key)
    assert hashed.count(ov_sha) == 2 and not (entry / reading.VERIFIED).exists()
    # Once they have settled, one verified read stamps them and the next hashes none.
    monkeypatch.setattr(reading, "TRUST_AFTER_S", -60.0)
    store.load(tmp_path, a.meta, "post", key)
    hashed.clear()
    store.load(tmp_path, a.meta, "post", key)
    assert hashed == [] and (entry / reading.VERIFIED).is_file()
    # Any rewrite is seen, even one that puts the old mtime back.
    target = entry / "ov.safetensors"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    if damage == "flip-keep-mtime":
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CacheError):
        store.load(tmp_path, a.meta, "post", key)
    assert hashed and ov_sha not in hashed  # rehashed, and found to differ


def test_checkpoint_part_round_trip(model, tmp_path: Path) -> None:
    from dataclasses import replace

    a = _build(model, tmp_path)
    key = settings_key(a.settings)
    trained = torch.rand(a.meta.d_vocab) > 0.3
    tokens = replace(a.tokens, trained=trained)
    part = checkpoint.CheckpointPart("fp-1", a.W_U, a.W_E, tokens)
    checkpoint.save_checkpoint(tmp_path, a.meta, "post", key, part)
    assert checkpoint.find_by_fingerprint(tmp_path, a.meta.name, "post", key, "fp-2") is None
    hit = checkpoint.find_by_fingerprint(tmp_path, a.meta.name, "post", key, "fp-1")
    assert hit is not None
    svd, got = hit
    assert svd.meta == a.meta and torch.equal(got.W_U, a.W_U) and torch.equal(got.W_E, a.W_E)
    assert got.tokens.raw == a.tokens.raw and got.tokens.display == a.tokens.display
    assert got.tokens.trained is not None and torch.equal(got.tokens.trained, trained)
    assert torch.equal(got.tokens.alpha, a.tokens.alpha)


def test_stale_settings_or_format_rebuild(model, tmp_path: Path) -> None:
    a = _build(model, tmp_path, k=10)
    assert _build(model, tmp_path, k=10).from_cache
    assert not _build(model, tmp_path, k=12).from_cache  # other settings: stale
    meta_path = store.entry_dir(tmp_path, a.meta, "post") / "meta.json"
    info = json.loads(meta_path.read_text())
    info["format_version"] = -1
    meta_path.write_text(json.dumps(info))
    assert not _build(model, tmp_path, k=12).from_cache


def test_other_weights_do_not_share_an_entry(model, tmp_path: Path) -> None:
    m, raw = model
    a = _build(model, tmp_path)
    from core.model.weights import hash_tensors

    W_out = raw.W_out.clone()
    W_out[0] *= 2
    changed = raw.replace(W_out=W_out)
    changed = changed.replace(
        meta=changed.meta.__class__(
            **{
                **changed.meta.to_json(),
                "weights_hash": hash_tensors({"W_out": W_out, "W_in": raw.W_in}),
            }
        )
    )
    b = analysis_from_weights(changed, m.tokenizer, a.settings)
    assert not b.from_cache
    assert store.entry_dir(tmp_path, a.meta, "post") != store.entry_dir(tmp_path, b.meta, "post")
    assert len(store.list_entries(tmp_path)) == 2


def test_no_pickle_in_the_code() -> None:
    root = Path(__file__).resolve().parents[3]
    for py in list((root / "core").rglob("*.py")) + list((root / "dashboard").rglob("*.py")):
        text = py.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, py


# --------------------------------------------------------------- hardening (issue 21)


@pytest.mark.parametrize(
    "name", ["..", "models/demo-gpt2/heldout/..", "/", "../../../tmp/x", "a" * 5000, "a/b\\c"]
)
def test_entry_folders_hash_the_name_and_stay_inside(model, tmp_path: Path, name: str) -> None:
    from dataclasses import replace

    a = _build(model, tmp_path / "first")
    cache = tmp_path / "cache"
    svd = replace(a.svd, meta=replace(a.meta, name=name))
    out = store.save(svd, cache, settings_key(a.settings))
    assert cache.resolve() in out.resolve().parents  # written inside the cache folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "first"]
    folder = out.parent.name
    assert folder != name and len(folder) <= 60 and "." not in folder
    back = store.load(cache, svd.meta, "post", settings_key(a.settings))
    assert torch.equal(back.kinds["ov"].decomposition.S, a.svd.kinds["ov"].decomposition.S)


def test_entry_path_from_a_damaged_hash_is_refused(model, tmp_path: Path) -> None:
    from dataclasses import replace

    a = _build(model, tmp_path)
    with pytest.raises(CacheError, match="leaves the cache folder"):
        store.entry_dir(tmp_path, replace(a.meta, weights_hash="../../../../etc"), "post")


@pytest.mark.parametrize("age", ["old", "fresh"])
def test_tmp_leftovers_of_a_killed_writer_are_cleaned(model, tmp_path: Path, age: str) -> None:
    a = _build(model, tmp_path)
    entry = store.entry_dir(tmp_path, a.meta, "post")
    tmp = entry / ".ov.safetensors.x1y2.tmp"
    tmp.write_bytes(b"half a file")
    if age == "old":
        then = tmp.stat().st_mtime - store.STALE_TMP_S - 60
        os.utime(tmp, (then, then))
    assert _build(model, tmp_path).from_cache
    # An old leftover goes; a fresh one may be a live writer's and stays.
    assert tmp.exists() == (age == "fresh")


_HOLDER = """
import json, sys
import torch
from core.cache import checkpoint, reading, store
from core.model.weights import ModelMeta

cache, meta, key = sys.argv[1], ModelMeta(**json.loads(sys.argv[2])), json.loads(sys.argv[3])
svd = store.load(cache, meta, "post", key)
print("ready", flush=True)
sys.stdin.readline()  # the test damages the files now
out = {}
for kind, r in svd.kinds.items():
    d = r.decomposition
    out[kind] = [float(d.S.double().sum()), float(d.directions.double().abs().sum()),
                 float(r.tops.top_val.double().sum())]
print(json.dumps(out), flush=True)
"""


def test_an_open_entry_survives_truncation_and_rewrites(model, tmp_path: Path) -> None:
    """A process that opened an entry keeps its values when the files are truncated or
    rewritten in place under it (no SIGBUS from a memory map, no changed values)."""
    import subprocess
    import sys

    a = _build(model, tmp_path)
    entry = store.entry_dir(tmp_path, a.meta, "post")
    key = settings_key(a.settings)
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path), json.dumps(a.meta.to_json()),
         json.dumps(key)],
        cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        # Truncate one file to its header's first bytes, overwrite 4 bytes of another.
        with open(entry / "ov.safetensors", "r+b") as f:
            f.truncate(64)
        with open(entry / "mlp_in.safetensors", "r+b") as f:
            f.seek(-64, os.SEEK_END)
            f.write(b"\x00\x00\xc0\x7f")
        out, err = proc.communicate("go\n", timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err  # -7 would be SIGBUS
    held = json.loads(out)
    for kind, r in a.svd.kinds.items():
        d = r.decomposition
        want = [float(d.S.double().sum()), float(d.directions.double().abs().sum()),
                float(r.tops.top_val.double().sum())]  # fmt: skip
        assert held[kind] == pytest.approx(want, rel=1e-12), kind
    # A new open sees the damage, and the entry is rebuilt.
    with pytest.raises(CacheError):
        store.load(tmp_path, a.meta, "post", key)
    assert not _build(model, tmp_path).from_cache and _build(model, tmp_path).from_cache


def test_lazy_load_reads_only_the_kinds_asked_for(model, tmp_path: Path, monkeypatch) -> None:
    """A lazy entry reads a kind's file when asked (and once), with the eager read's values;
    a file damaged after the open is refused in one sentence, the entry dropped, and the
    next open rebuilds it; a truncated file is seen at the open already."""
    a = _build(model, tmp_path)
    key = settings_key(a.settings)
    eager = store.load(tmp_path, a.meta, "post", key)
    read: list[str] = []
    real = reading.read_files

    def spy(out: Path, files: dict, names: list[str], mapped: bool = False) -> dict:
        read.extend(names)
        return real(out, files, names, mapped)

    monkeypatch.setattr(reading, "read_files", spy)
    lazy = store.load(tmp_path, a.meta, "post", key, lazy=True)
    assert "ov" in lazy.kinds and "nothing" not in lazy.kinds
    assert read == [] and set(lazy.kinds) == set(eager.kinds)
    ov = lazy.kinds["ov"]
    assert lazy.kinds["ov"] is ov and read == ["ov.safetensors"]
    for name in ("S", "U", "V"):
        want = getattr(eager.kinds["ov"].decomposition, name)
        assert torch.equal(getattr(ov.decomposition, name), want)
    assert torch.equal(ov.tops.top_idx, eager.kinds["ov"].tops.top_idx)
    # Same size, other bytes: only the read finds it.
    entry = store.entry_dir(tmp_path, a.meta, "post")
    target = entry / "mlp_in.safetensors"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="rebuild") as info:
        lazy.kinds["mlp_in"]
    assert "\n" not in str(info.value)
    assert not (entry / "meta.json").exists()
    rebuilt = _build(model, tmp_path)
    assert not rebuilt.from_cache
    # A truncated file fails the open itself.
    with open(entry / "mlp_out.safetensors", "r+b") as f:
        f.truncate(64)
    with pytest.raises(CacheError, match="truncated"):
        store.load(tmp_path, a.meta, "post", key, lazy=True)


def test_build_and_save_writes_what_the_build_holds(model, tmp_path: Path) -> None:
    """The streamed writer's files hold the built tensors, and the manifest's hashes
    (taken from the bytes in memory) are the files' own."""
    import hashlib

    from safetensors.torch import load_file

    from core.cache.build import build_and_save
    from core.cache.tables import kind_tensors
    from core.model.weights import process

    m, raw = model
    s = Settings(model="tiny-llama", device="cpu", cache_dir=tmp_path)
    weights = process(raw, s.processing)
    svd = build_and_save(weights, s, settings_key(s))
    entry = store.entry_dir(tmp_path, svd.meta, s.processing)
    info = json.loads((entry / "meta.json").read_text())
    assert list(info["kinds"]) == list(svd.kinds)
    for kind, res in svd.kinds.items():
        path = entry / f"{kind}.safetensors"
        rec = info["files"][path.name]
        assert rec == {
            "size": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        on_disk, built = load_file(path), kind_tensors(res)
        assert on_disk.keys() == built.keys()
        assert all(torch.equal(on_disk[n], built[n]) for n in built)
    back = store.load(tmp_path, svd.meta, s.processing, settings_key(s))
    assert torch.equal(back.kinds["ov"].tops.top_val, svd.kinds["ov"].tops.top_val)


def test_a_kind_is_written_while_the_next_is_built(model, tmp_path: Path, monkeypatch) -> None:
    """The first kind's write waits until the second kind's build has begun: were the
    writes not overlapped with the build, this would stall (and fail at the timeout)."""
    import threading

    from core.cache import build
    from core.model.weights import process

    m, raw = model
    s = Settings(model="tiny-llama", device="cpu", cache_dir=tmp_path, kinds=("ov", "mlp_in"))
    second_started, waited = threading.Event(), []
    real_decompose, real_write = build.decompose_kind, store.write_safetensors

    def decompose(w, kind, tol, eighs=None):
        if kind == "mlp_in":
            second_started.set()
        return real_decompose(w, kind, tol, eighs)

    def write(out, fname, tensors):
        if fname == "ov.safetensors":
            waited.append(second_started.wait(timeout=60))
        return real_write(out, fname, tensors)

    monkeypatch.setattr(build, "decompose_kind", decompose)
    monkeypatch.setattr(store, "write_safetensors", write)
    svd = build.build_and_save(process(raw, s.processing), s, settings_key(s))
    assert waited == [True]
    assert store.load(tmp_path, svd.meta, s.processing, settings_key(s)).kinds.keys() == {
        "ov",
        "mlp_in",
    }


def test_a_build_that_fails_midway_leaves_no_valid_entry(
    model, tmp_path: Path, monkeypatch
) -> None:
    from core.cache import build
    from core.model.weights import process

    m, raw = model
    s = Settings(model="tiny-llama", device="cpu", cache_dir=tmp_path)
    weights = process(raw, s.processing)
    key = settings_key(s)
    build.build_and_save(weights, s, key)  # a valid entry first
    real = build.decompose_kind

    def fail_on_mlp(w, kind, tol, eighs=None):
        if kind == "mlp_out":
            raise RuntimeError("out of memory, say")
        return real(w, kind, tol, eighs)

    monkeypatch.setattr(build, "decompose_kind", fail_on_mlp)
    with pytest.raises(RuntimeError, match="out of memory"):
        build.build_and_save(weights, s, key)
    with pytest.raises(CacheError):
        store.load(tmp_path, weights.meta, s.processing, key)
    entry = store.entry_dir(tmp_path, weights.meta, s.processing)
    assert not list(entry.glob(".*.tmp"))
