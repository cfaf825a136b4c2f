"""Opening an analysis from the cache alone: no model load, no transformers import, the
same answers as the model-loading path, and changed weights noticed."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from core.analysis import open_analysis, settings_key
from core.cache import checkpoint, store
from core.cli.main import main
from core.settings import PROJECTIONS, Settings
from core.svd.project import read_unembed
from tests.child import child_json
from tests.tiny_models import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]

DIRECTIONS = [
    "directions",
    "--matrix",
    "ov",
    "--layer",
    "1",
    "--head",
    "2",
    "--n",
    "5",
    "--k",
    "6",
    "--json",
]
SEARCH = [
    "search",
    "--query",
    "fire, water",
    "--threshold",
    "0",
    "--top",
    "8",
    "--k",
    "5",
    "--all",  # a random tiny model has no significant hit; the test compares every hit
    "--json",
]
FILTERED = [
    "directions",
    "--matrix",
    "mlp_in",
    "--layer",
    "0",
    "--n",
    "70",
    "--k",
    "4",
    "--filter",
    "alpha",
    "--json",
]

# Runs the CLI in a fresh interpreter and reports its outputs and what it imported.
_CHILD = """
import contextlib, io, json, sys
import core.search.null
from core.cli.main import main
# As tests/conftest.py sets it in this process: the stored null is then read, not redrawn.
core.search.null.N_DRAWS = 20
outs = []
for argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    outs.append([code, buf.getvalue()])
# core.activations: the parser lists its sides from core.settings (80 ms of imports).
heavy = ("transformers", "transformer_lens", "wordfreq", "core.activations")
mods = [m for m in heavy if m in sys.modules]
print(json.dumps({"outs": outs, "modules": mods}))
"""


def _child(commands: list[list[str]]) -> dict:
    return _python(_CHILD, json.dumps(commands))


def _python(code: str, *args: str) -> dict:
    """The JSON that ``code`` prints last, run in a fresh interpreter with ``args``."""
    return child_json(code, *args, env={"HF_HUB_OFFLINE": "1"}, timeout=300)


def _with(args: list[str], model: Path, cache: Path) -> list[str]:
    return [*args, "--model", str(model), "--cache-dir", str(cache), "--device", "cpu"]


@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    return save_checkpoint("gpt2", tmp_path / "gpt2", seed=77)


def test_cached_cli_answers_without_the_model_and_agrees(
    capsys, ckpt: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    commands = [_with(a, ckpt, cache) for a in (DIRECTIONS, SEARCH, FILTERED)]
    loaded = []
    for argv in commands:  # the first loads the model and builds the entry
        assert main(argv) == 0
        loaded.append(capsys.readouterr().out)
    assert json.loads(loaded[1]), "the search should find something"
    # The search twice: the first cache-only call writes the query-word memo, the second
    # reads it (core.search.memo); both from the entry alone.
    child = _child([*commands, commands[1]])
    assert not {"transformers", "transformer_lens"} & set(child["modules"]), child["modules"]
    assert [code for code, _ in child["outs"]] == [0, 0, 0, 0]
    for (_, out), ref in zip(child["outs"], [*loaded, loaded[1]]):
        _close(json.loads(out), json.loads(ref))
    # Once the memo is written, a search reads no word-frequency list either (the memo
    # holds its words' frequencies, which pick the null) and imports no activations code.
    again = _child([commands[1]])
    assert again["modules"] == []
    _close(json.loads(again["outs"][0][1]), json.loads(loaded[1]))


def _close(a, b) -> None:
    """Equal JSON, floats to float32 rounding: the first call projected the grid's rows
    on demand while the entry was filling, the cached call reads the filled entry."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k])
    else:
        assert a == b


def test_cached_analysis_loads_the_model_only_when_asked(ckpt: Path, tmp_path: Path) -> None:
    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    built = open_analysis(s)
    cached = open_analysis(s)
    assert cached.from_cache and not cached.source.loaded
    assert cached.meta == built.meta
    assert torch.equal(cached.W_U, built.W_U) and torch.equal(cached.W_E, built.W_E)
    ct, bt = cached.tokens, built.tokens
    assert ct.raw == bt.raw and ct.display == bt.display
    assert ct.norm is not None and bt.norm is not None and torch.equal(ct.norm, bt.norm)
    assert torch.equal(ct.alpha, bt.alpha) and torch.equal(ct.ascii, bt.ascii)
    assert (ct.trained is None) == (bt.trained is None)
    # Something that needs the weights reads them from the files and sees the same ones,
    # without hashing them again (the folder kept the entry's fingerprint); the model
    # loads only when something needs it.
    import core.model.streamed as streamed

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(streamed, "hash_tensors", lambda tensors: pytest.fail("rehashed"))
        assert torch.equal(cached.weights.W_U, built.weights.W_U)
    assert torch.equal(cached.raw.W_in, built.raw.W_in)
    assert cached.source.loaded and cached.source.get().model is None
    assert cached.model is not None and cached.source.get().model is cached.model


def _rewrite_one_weight(ckpt: Path) -> None:
    """Same size, same header, one weight changed, mtime moved on."""
    from safetensors.torch import load_file, save_file

    path = ckpt / "model.safetensors"
    before = path.stat()
    t = load_file(str(path))
    name = next(k for k in sorted(t) if k.endswith("mlp.c_proj.weight"))
    t[name] = t[name].clone()
    t[name][0, 0] += 1.0
    save_file(t, str(path), metadata={"format": "pt"})
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def test_changed_weights_are_noticed(ckpt: Path, tmp_path: Path) -> None:
    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    first = open_analysis(s)
    assert open_analysis(s).from_cache
    _rewrite_one_weight(ckpt)
    second = open_analysis(s)
    # The fingerprint no longer matched: the model was loaded and hashed, and the entry
    # of the old weights was not used.
    assert second.source.loaded and not second.from_cache
    assert second.meta.weights_hash != first.meta.weights_hash
    # The new entry answers the next open from the cache alone.
    third = open_analysis(s)
    assert third.from_cache and not third.source.loaded
    assert third.meta.weights_hash == second.meta.weights_hash


def test_touched_weights_keep_the_entry(ckpt: Path, tmp_path: Path) -> None:
    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    first = open_analysis(s)
    path = ckpt / "model.safetensors"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = open_analysis(s)
    # Loaded to rehash, same bytes: the entry is reused and its fingerprint refreshed.
    assert second.source.loaded and second.from_cache
    assert second.meta.weights_hash == first.meta.weights_hash
    assert not open_analysis(s).source.loaded


def test_a_damaged_checkpoint_part_falls_back_to_loading(ckpt: Path, tmp_path: Path) -> None:
    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    first = open_analysis(s)
    entry = store.entry_dir(s.cache_dir, first.meta, "post")
    (entry / checkpoint.TOKENS_FILE).write_text("[]")
    again = open_analysis(s)
    assert again.source.loaded and again.from_cache
    assert not open_analysis(s).source.loaded  # rewritten


def test_a_copied_checkpoint_is_its_own_fingerprint(ckpt: Path, tmp_path: Path) -> None:
    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    open_analysis(s)
    other = tmp_path / "copy"
    shutil.copytree(ckpt, other)  # new mtimes: checked by loading, not trusted
    assert open_analysis(s.replace(model=str(other))).source.loaded


def test_projection_is_part_of_the_cache_key(ckpt: Path, tmp_path: Path) -> None:
    keys = {json.dumps(settings_key(Settings(projection=p))) for p in PROJECTIONS}
    assert len(keys) == len(PROJECTIONS)
    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache", projection="raw")
    raw = open_analysis(s)
    std = open_analysis(s.replace(projection="standardized"))
    assert not std.from_cache  # the raw entry does not answer for another projection
    again = open_analysis(s.replace(projection="standardized"))
    assert again.from_cache and not again.source.loaded
    # The read unembedding is the projection of the processed weights, kept as such.
    assert torch.allclose(raw.W_U, raw.weights.W_U)
    ref = read_unembed(std.weights.W_U, "standardized")
    assert torch.allclose(again.W_U, ref) and not torch.allclose(again.W_U, raw.W_U)
    assert again.tokens.norm is not None
    assert torch.allclose(again.tokens.norm, std.weights.W_U.norm(dim=0))


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_a_new_entry_is_built_from_the_files_like_the_loaded_model(
    checkpoints: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    """An empty cache is filled from the checkpoint's files (no TransformerLens import,
    no model load); the entry equals the one built from the model TransformerLens loads
    (the reference): weights hash, token table, every kind's singular values and the
    tokens at its ends."""
    from core.analysis import analysis_from_weights
    from core.model.loading import load_model
    from core.model.source import raw_weights

    ckpt = checkpoints[arch]
    cache = tmp_path / "cache"
    out = _child([_with(DIRECTIONS, ckpt, cache)])
    assert out["outs"][0][0] == 0
    assert "transformer_lens" not in out["modules"]  # the tokenizer came through transformers
    s = Settings(model=str(ckpt), device="cpu", cache_dir=cache)
    read = open_analysis(s)
    assert read.from_cache  # the child's entry
    model = load_model(s, bridge=True)
    ref = analysis_from_weights(raw_weights(model), model.tokenizer, s, model, use_cache=False)
    assert read.meta == ref.meta  # the weights hash included
    assert read.tokens.raw == ref.tokens.raw and read.tokens.display == ref.tokens.display
    for kind, res in ref.svd.kinds.items():
        got = read.svd.kinds[kind]
        assert torch.equal(got.decomposition.S, res.decomposition.S), kind
        assert torch.equal(got.tops.top_idx, res.tops.top_idx), kind
        assert torch.equal(got.tops.bottom_idx, res.tops.bottom_idx), kind
        # The child projected in two steps (first directions, then the fill), in other
        # blocks than one pass: the same dot products, summed in another order.
        assert torch.allclose(got.tops.bottom_val, res.tops.bottom_val, atol=1e-5), kind


def test_an_entry_read_from_the_files_loads_the_model_when_asked(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built from the files, the analysis holds no model until something asks for one;
    then it is loaded once, and checked against the weights already read when the files
    changed since."""
    import core.model.source as source

    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    a = open_analysis(s)
    assert not a.from_cache and a.source.loaded
    assert a.source.get().model is None  # weights in memory, no model yet
    with monkeypatch.context() as mp:
        # The folder kept its fingerprint: the model's weights are not read back to check.
        mp.setattr(source, "raw_weights", lambda model: pytest.fail("rehashed"))
        m = a.model
    assert m is not None and a.model is m
    ids = torch.tensor([[1, 2, 3]])
    assert m.hf_model(ids).logits.shape == (1, 3, a.meta.d_vocab)
    # Weights changed on disk after they were read: asking for the model says so.
    b = open_analysis(s.replace(cache_dir=tmp_path / "other"))
    _rewrite_one_weight(ckpt)
    from core.errors import CacheError

    with pytest.raises(CacheError, match="changed after its cache entry was opened"):
        _ = b.model


def test_a_forward_pass_on_a_cached_analysis_reads_no_weights(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened from the cache, a forward pass loads the model alone; the weights read
    later are the same ones, beside the same model (loaded once)."""
    import core.model.source as source

    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    built = open_analysis(s)
    assert built.model is not None  # the reference, loaded before loads are counted
    cached = open_analysis(s)
    loads: list[str] = []
    real_load = source.load_model
    monkeypatch.setattr(source, "load_model", lambda st: loads.append(st.model) or real_load(st))
    with monkeypatch.context() as mp:
        mp.setattr(source, "read_weights", lambda *a, **k: pytest.fail("weights read"))
        m = cached.model
    assert m is not None and not cached.source.loaded and loads == [s.model]
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(m.hf_model(ids).logits, built.model.hf_model(ids).logits)
    assert torch.equal(cached.weights.W_U, built.weights.W_U)
    assert torch.equal(cached.raw.W_in, built.raw.W_in)
    assert cached.source.get().model is m and cached.model is m and loads == [s.model]
    # A checkpoint the file reader does not know: the weights come from that same model.
    other = open_analysis(s)
    _ = other.model
    monkeypatch.setattr(source, "read_weights", lambda *a, **k: None)
    assert torch.equal(other.raw.W_in, built.raw.W_in)
    assert other.source.get().model is other.model and loads == [s.model] * 2


_PROMPT_CHILD = """
import json, sys, torch
from core.analysis import open_analysis
from core.edit.hf import plain_model
from core.settings import Settings
a = open_analysis(Settings(model=sys.argv[1], device="cpu", cache_dir=sys.argv[2]))
ids = torch.tensor([a.model.tokenizer.encode("red blue yellow")])
with torch.no_grad():
    logits = plain_model(a)(ids).logits[0, -1]
print(json.dumps({"from_cache": a.from_cache, "ids": ids[0].tolist(), "logits": logits.tolist(),
                  "lens": "transformer_lens" in sys.modules}))
"""


def test_a_forward_pass_on_a_cached_analysis_does_not_import_transformer_lens(
    ckpt: Path, tmp_path: Path
) -> None:
    """The model a prompt needs loads as a plain Hugging Face model (the bridge's import and
    boot are seconds of the first answer), with the ids and logits of TransformerLens's load.
    """
    from core.edit.hf import plain_model, plain_module
    from core.model.loading import load_model

    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    built = open_analysis(s)
    out = _python(_PROMPT_CHILD, str(ckpt), str(s.cache_dir))
    assert out["from_cache"] and not out["lens"]
    ref = load_model(s, bridge=True)  # TransformerLens's own load is the reference
    ids = ref.tokenizer.encode("red blue yellow")
    assert out["ids"] == ids
    with torch.no_grad():
        want = plain_model(built)(torch.tensor([ids])).logits[0, -1]
    assert built.model is not None and built.model.bridge is None
    with torch.no_grad():
        assert torch.equal(plain_module(ref.hf_model)(torch.tensor([ids])).logits[0, -1], want)
    # Another process may split the matmuls over other thread counts: the last bits differ.
    torch.testing.assert_close(torch.tensor(out["logits"]), want, rtol=1e-5, atol=1e-5)


def test_a_model_loaded_after_the_weights_changed_is_refused(ckpt: Path, tmp_path: Path) -> None:
    from core.errors import CacheError

    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    open_analysis(s)
    cached = open_analysis(s)
    _rewrite_one_weight(ckpt)
    with pytest.raises(CacheError, match="changed after its cache entry was opened"):
        _ = cached.model


def test_a_background_model_load_is_the_one_a_forward_pass_uses(ckpt: Path, tmp_path: Path) -> None:
    """ModelPreload loads the model a later forward pass gets (no second load); a load
    that fails is kept on the job, and the pass's own request fails with the same sentence."""
    import core.model.source as source
    from core.errors import CacheError
    from core.model.source import ModelPreload

    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    open_analysis(s)
    cached = open_analysis(s)
    assert not cached.source.model_ready
    job = ModelPreload(cached.source).start()
    assert job.wait(300) and job.error is None and cached.source.model_ready
    # The weights were read after the model (a prompt's directions need them next).
    assert cached.source.loaded
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(source.ModelSource, "_load_model", lambda *a: pytest.fail("loaded twice"))
        mp.setattr(source, "read_weights", lambda *a: pytest.fail("read twice"))
        assert cached.model is cached.source.model()
        background = cached.weights
    fresh = open_analysis(s).weights  # read in the foreground
    assert torch.equal(background.W_O, fresh.W_O) and torch.equal(background.W_in, fresh.W_in)
    # A loaded model is handed out without the source's lock, which a read of the
    # weights holds for a while (a prompt sent meanwhile need not wait for it).
    got: list[object] = []
    model = cached.model
    with cached.source._lock:
        t = threading.Thread(target=lambda: got.append(cached.source.model()))
        t.start()
        t.join(30)
        assert got == [model]  # before the lock is let go

    again = open_analysis(s)
    _rewrite_one_weight(ckpt)
    failed = ModelPreload(again.source).start()
    assert failed.wait(300) and isinstance(failed.error, CacheError)
    assert not again.source.model_ready
    with pytest.raises(CacheError, match="changed after its cache entry was opened"):
        _ = again.model


def test_weights_changed_after_a_cached_open_are_refused(ckpt: Path, tmp_path: Path) -> None:
    """Opened from the cache, then the weights rewritten: reading them (from the files)
    finds another hash and says so in one sentence rather than answering from them."""
    from core.errors import CacheError

    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    open_analysis(s)
    cached = open_analysis(s)
    assert cached.from_cache and not cached.source.loaded
    _rewrite_one_weight(ckpt)
    with pytest.raises(CacheError, match="changed after its cache entry was opened"):
        _ = cached.weights


def test_a_damaged_weights_file_is_one_sentence(tmp_path: Path) -> None:
    """A truncated safetensors file on an empty cache: the file reader steps aside and the
    model's loader says what is wrong, in one sentence."""
    from core.errors import ModelLoadError

    ckpt = save_checkpoint("llama", tmp_path / "llama", seed=5)
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    s = Settings(model=str(ckpt), device="cpu", cache_dir=tmp_path / "cache")
    with pytest.raises(ModelLoadError) as err:
        open_analysis(s)
    assert str(ckpt) in str(err.value) and "\n" not in str(err.value)
