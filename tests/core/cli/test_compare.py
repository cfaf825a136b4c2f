"""``match`` and ``trajectory`` on the command line over a tiny checkpoint series, and
``name@revision`` model specs (split, passed to the hub loader, part of the cache key)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cache.manifest import model_folder
from core.cli.main import main
from core.errors import ModelLoadError
from core.model import loading
from core.model.loading import resolve_model, split_revision
from core.settings import Settings
from tests.tiny_models import save_checkpoint


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("series")
    # Named so that a plain string sort would put step-10 first.
    save_checkpoint("gpt2", root / "step-10", seed=0)
    save_checkpoint("gpt2", root / "step-2", seed=7)
    (root / "notes").mkdir()  # not a checkpoint: skipped
    return root


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_match_and_trajectory_json(capsys, series_dir: Path, tmp_path: Path) -> None:
    a = str(series_dir / "step-10")
    code, out, err = run(
        capsys,
        "match",
        "--model",
        a,
        "--other",
        a,
        "--matrix",
        "ov",
        "--layer",
        "1",
        "--head",
        "2",
        "--cache-dir",
        str(tmp_path),
        "--json",
    )
    assert code == 0, err
    m = json.loads(out)
    assert [(p["a"], p["b"]) for p in m["pairs"]] == [(i, i) for i in range(16)]
    assert all(abs(p["cos"] - 1) < 1e-4 and p["sign"] == 1 for p in m["pairs"])
    assert m["unmatched"] == []

    code, out, err = run(
        capsys,
        "trajectory",
        "--models",
        str(series_dir),
        "--matrix",
        "mlp_out",
        "--layer",
        "0",
        "--n",
        "4",
        "--cache-dir",
        str(tmp_path),
        "--json",
    )
    assert code == 0, err
    t = json.loads(out)
    assert [Path(c).name for c in t["checkpoints"]] == ["step-2", "step-10"]
    assert len(t["consecutive_cos"]) == 1 and len(t["consecutive_cos"][0]) == 4
    d = t["directions"][0]
    assert abs(d["cos"][-1] - 1) < 1e-5 and len(d["top"]) == 2 and len(d["top"][0]) == 5
    # Two independent random inits share nothing: the last checkpoint's directions appear there.
    assert all(x["appears_at"] == 1 for x in t["directions"])


def test_match_refuses_a_missing_head(capsys, series_dir: Path, tmp_path: Path) -> None:
    a = str(series_dir / "step-10")
    code, _, err = run(
        capsys,
        "match",
        "--model",
        a,
        "--other",
        a,
        "--matrix",
        "ov",
        "--layer",
        "1",
        "--cache-dir",
        str(tmp_path),
    )
    assert code == 2 and "--head" in err


def test_revision_specs(tmp_path: Path, monkeypatch) -> None:
    assert split_revision("EleutherAI/pythia-160m@step3000") == (
        "EleutherAI/pythia-160m",
        "step3000",
    )
    assert split_revision("EleutherAI/pythia-160m") == ("EleutherAI/pythia-160m", None)
    assert resolve_model("EleutherAI/pythia-160m@step3000") == "EleutherAI/pythia-160m"
    local = tmp_path / "ckpt@1"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert split_revision(str(local)) == (str(local), None)  # a folder is a folder
    with pytest.raises(ModelLoadError):
        split_revision("EleutherAI/pythia-160m@")
    # Each revision has its own cache folder.
    assert model_folder("a/b@step1") != model_folder("a/b@step2") != model_folder("a/b")

    seen: dict[str, object] = {}

    def boot(source, **kw):
        seen.update(kw, source=source)
        raise ValueError("stop here")

    from transformer_lens.model_bridge import TransformerBridge

    monkeypatch.setattr(
        loading,
        "_local_snapshot",
        lambda repo, revision=None: seen.update(snap=(repo, revision)) or repo,
    )
    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(boot))
    with pytest.raises(ModelLoadError):
        loading.load_model(Settings(model="EleutherAI/pythia-160m@step3000", device="cpu"))
    assert seen["snap"] == ("EleutherAI/pythia-160m", "step3000")
    assert seen["source"] == "EleutherAI/pythia-160m" and seen["revision"] == "step3000"


def test_trajectory_embed_dictionary(capsys, series_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """``--embed-dictionary``: every checkpoint's embedding dictionary error beside its random
    control, each the Methods page's build (same numbers), read from the cache on a rerun."""
    from core.analysis import open_analysis, settings_key
    from core.decompose import DecomposeOptions, build, components
    from core.settings import Settings

    args = ["trajectory", "--models", str(series_dir), "--matrix", "ov", "--layer", "0",
            "--head", "0", "--device", "cpu", "--cache-dir", str(tmp_path), "--n", "2",
            "--embed-dictionary", "--nnz", "2", "--json"]  # fmt: skip
    code, out, err = run(capsys, *args)
    assert code == 0, err
    points = json.loads(out)["embed_dictionary"]
    assert [Path(p["checkpoint"]).name for p in points] == ["step-2", "step-10"]  # training order
    opts = DecomposeOptions(method="dictionary", nnz=2)
    for p in points:
        a = open_analysis(Settings(model=p["checkpoint"], device="cpu", cache_dir=tmp_path))
        for field, control in (("fvu", False), ("control_fvu", True)):
            c = components(a, settings_key(a.settings), opts, "embed", 0, control)
            assert p[field] == round(c.fvu, 5)
        assert 0.0 <= p["fvu"] <= 1.0 and p["nnz"] == 2

    # A rerun fits nothing: every build is in its checkpoint's entry.
    def no_fit(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("refitted")

    monkeypatch.setattr(build, "fit_components", no_fit)
    code, out, err = run(capsys, *args)
    assert code == 0, err and json.loads(out)["embed_dictionary"] == points
    code, _, err = run(capsys, *args[:-3], "--embed-dictionary", "--nnz", "0")
    assert code == 2 and "--nnz" in err
