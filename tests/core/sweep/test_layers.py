"""Per-layer split sweeps: each piece reads only its layers' tensors, and the merged entry
equals a serial build of the whole model byte for byte, on the three families; on Ray a
piece whose worker dies is retried; a finished entry or piece is not rebuilt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.cli.main import main
from core.errors import SpecError
from core.model.streamed import CheckpointReader
from core.settings import Settings
from core.sweep import SweepOptions, run_sweep
from core.sweep.layers import build_shard, shards_root
from tests.core.sweep.test_sweep import entry_files
from tests.tiny_models import ARCHS


def hashes(cache: Path) -> dict[str, str]:
    files = entry_files(cache)
    assert not any(k.startswith(".shards") and "layers" in k for k in files), "shards left"
    return {k: v[0] for k, v in files.items() if not k.startswith(".shards")}


@pytest.mark.parametrize("arch", ARCHS)
def test_split_equals_serial(checkpoints: dict[str, Path], arch: str, tmp_path: Path) -> None:
    model = (str(checkpoints[arch]),)
    serial = run_sweep(SweepOptions(model, tmp_path / "serial", device="cpu"))
    seen: list[str] = []
    split = run_sweep(
        SweepOptions(model, tmp_path / "split", device="cpu", layers_per_task=1),
        lambda i, m, f, msg: seen.append(m),
    )
    assert serial.results[0].state == split.results[0].state == "built"
    a, b = hashes(tmp_path / "serial"), hashes(tmp_path / "split")
    assert len(a) >= 9 and a == b
    # Two layers, one piece each, and the embedding: progress named every piece.
    assert {re.sub(r".* \[", "[", m) for m in seen} == {
        "[layers-0000-0001]",
        "[layers-0001-0002]",
        "[embed]",
    }
    again = run_sweep(SweepOptions(model, tmp_path / "split", device="cpu", layers_per_task=1))
    assert again.results[0].state == "cached"


def test_a_piece_reads_only_its_layers(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    original = CheckpointReader.tensor

    def spy(self: CheckpointReader, name: str):  # type: ignore[no-untyped-def]
        read.append(name)
        return original(self, name)

    monkeypatch.setattr(CheckpointReader, "tensor", spy)
    path = checkpoints["llama"]
    settings = Settings(model=str(path), device="cpu", cache_dir=tmp_path)
    out, built = build_shard(settings, path, (1, 2))
    assert built and (out / "shard.json").is_file()
    layered = {n for n in read if ".layers." in n}
    assert layered and all(".layers.1." in n for n in layered), sorted(layered)
    # A second call finds the shard whole and reads nothing.
    read.clear()
    assert build_shard(settings, path, (1, 2)) == (out, False) and not read
    assert out.parent == shards_root(settings, path)


def test_split_on_ray_retries_a_killed_piece(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    model = (str(checkpoints["gpt2"]),)
    serial = run_sweep(SweepOptions(model, tmp_path / "serial", device="cpu"))
    assert serial.results[0].state == "built"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = run_sweep(
            SweepOptions(
                model,
                tmp_path / "ray",
                device="cpu",
                engine="ray",
                layers_per_task=1,
                crash_once=frozenset(model),
            )
        )
    finally:
        ray.shutdown()
    (result,) = report.results
    assert result.state == "built" and result.attempts == 2, report.to_json()
    assert hashes(tmp_path / "serial") == hashes(tmp_path / "ray")


def test_split_refusals(checkpoints: dict[str, Path], tmp_path: Path, capsys) -> None:
    with pytest.raises(SpecError, match="random controls"):
        SweepOptions(("m",), tmp_path, what=("decompose", "controls"), layers_per_task=2)
    with pytest.raises(SpecError, match="layers-per-task"):
        SweepOptions(("m",), tmp_path, layers_per_task=-1)
    args = ["sweep", "--models", str(checkpoints["neox"]), "--cache-dir", str(tmp_path)]
    assert main([*args, "--layers-per-task", "2", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["built"], out["failed"]) == (1, 0)


def test_labels_are_swept_into_the_store(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """``--what labels`` leaves in labels.sqlite what ``python -m core label`` writes for
    the same directions, both ends of each (whole-model and split sweeps alike), and is
    not redone."""
    from core.label.store import LabelStore

    def verdicts(cache: Path, model: str) -> dict[tuple, tuple]:
        with LabelStore.in_cache(cache) as store:
            recs = store.query(model=model, labeller="offline", matrix="ov")
        return {
            (r.layer, r.head, r.index, r.control, r.end): (r.interpretable, r.label) for r in recs
        }

    model = str(checkpoints["gpt2"])
    cli = tmp_path / "cli"
    for flag in ([], ["--control"]):
        args = ["label", "--model", model, "--matrix", "ov", "--layers", "all", "--n", "30"]
        assert main([*args, *flag, "--cache-dir", str(cli), "--device", "cpu"]) == 0
    want = verdicts(cli, model)
    assert any(k[3] for k in want) and any(not k[3] for k in want)
    assert {k[4] for k in want} == {"top", "bottom"}

    whole = SweepOptions((model,), tmp_path / "whole", device="cpu", what=("controls", "labels"))
    report = run_sweep(whole)
    assert report.results[0].state == "built" and report.labels > len(want)
    assert verdicts(tmp_path / "whole", model) == want
    _old_parts_take_their_entrys_reading(Path(report.results[0].entry))
    again = run_sweep(whole)
    assert again.results[0].state == "cached" and again.labels == report.labels

    split = SweepOptions(
        (model,), tmp_path / "split", device="cpu", what=("labels",), layers_per_task=1
    )
    got = verdicts(tmp_path / "split", model)
    assert got == {}
    assert run_sweep(split).results[0].state == "built"
    assert verdicts(tmp_path / "split", model) == {k: v for k, v in want.items() if not k[3]}


def _old_parts_take_their_entrys_reading(entry: Path) -> None:
    """The swept verdicts name the entry's reading; a part from before verdicts named
    their reading is read under the entry's."""
    from core.cache import parts as cache_parts
    from core.label.store import LabelRecord
    from core.model.weights import ModelMeta
    from core.settings import DEFAULT_PROJECTION
    from core.sweep.task import LABELS_PART, stored_labels

    info = json.loads((entry / "meta.json").read_text())
    where = (entry.parent.parent, ModelMeta(**info["model"]), info["processing"], info["settings"])
    extra, _ = cache_parts.load_part(*where, LABELS_PART)
    rows = extra["labels"]
    assert {(r["processing"], r["projection"]) for r in rows} == {("post", DEFAULT_PROJECTION)}
    bare = [{k: v for k, v in r.items() if k not in ("processing", "projection")} for r in rows]
    cache_parts.save_part(*where, LABELS_PART, {}, {**extra, "labels": bare})
    assert stored_labels(entry) == [LabelRecord(**r) for r in rows]


def test_examples_are_swept_into_the_entry(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """``--what examples`` leaves the entry holding the examples a direct build gives (same
    contexts and values), in a whole-model sweep and after a split one; a rerun builds
    nothing."""
    import torch

    from core.activations import build_examples, get_examples, load_corpus
    from core.analysis import open_analysis

    model = str(checkpoints["llama"])
    corpus = load_corpus()
    for name, extra in (("whole", {}), ("split", {"layers_per_task": 1})):
        opts = SweepOptions((model,), tmp_path / name, device="cpu", what=("examples",), **extra)
        assert run_sweep(opts).results[0].state == "built"
        a = open_analysis(Settings(model=model, device="cpu", cache_dir=tmp_path / name))
        got = get_examples(a, corpus, build=False)
        assert got is not None
        want = build_examples(a, corpus)
        for side, ex in want.sides.items():
            theirs = got.sides[side]
            assert torch.equal(ex.top_doc, theirs.top_doc) and torch.equal(
                ex.top_pos, theirs.top_pos
            )
            assert torch.allclose(ex.top_val, theirs.top_val, atol=1e-5)
        assert run_sweep(opts).results[0].state == "cached"
