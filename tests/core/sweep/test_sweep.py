"""Sweeps: the Ray engine on a small local cluster (2 CPUs) writes the same bytes as the
serial engine; a worker killed half-way is retried and reported; a finished entry is
never rebuilt; a failing model is reported and the others still built."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cache.reading import VERIFIED
from core.cli.main import main
from core.sweep import SweepOptions, run_sweep
from tests.tiny_models import make_hf_model, make_tokenizer

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One local Ray cluster for the module: starting one costs seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """Three GPT-2s with d_model 256: wide enough that LAPACK's eigensolver would use
    more than one thread if the task let it (and then write other bytes)."""
    root = tmp_path_factory.mktemp("sweep-models")
    tok = make_tokenizer()
    out = []
    for i in range(3):
        d = root / f"step-{i}"
        make_hf_model("gpt2", seed=10 + i, n_embd=256).save_pretrained(d)
        tok.save_pretrained(d)
        out.append(str(d))
    return tuple(out)


def entry_files(cache: Path) -> dict[str, tuple[str, int]]:
    """Every file of every entry: SHA-256 and modification time (the read stamps aside,
    which record when an entry was last checked, and the sweep's own status folder).
    """
    out = {}
    for p in sorted(cache.rglob("*")):
        rel = p.relative_to(cache)
        if (
            p.is_file()
            and rel.parts[0] != ".sweep"
            and p.name != VERIFIED
            and not p.name.endswith(".tmp")
        ):
            out[str(rel)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def test_ray_writes_the_serial_bytes_and_retries_a_killed_worker(
    cluster: None, models: tuple[str, ...], tmp_path: Path
) -> None:
    serial = run_sweep(SweepOptions(models, tmp_path / "serial", device="cpu"))
    assert [r.state for r in serial.results] == ["built"] * 3

    seen: list[tuple[int, str]] = []
    opts = SweepOptions(
        models, tmp_path / "ray", device="cpu", engine="ray", crash_once=frozenset({models[1]})
    )
    report = run_sweep(opts, lambda i, m, f, msg: seen.append((i, msg)))
    assert [r.state for r in report.results] == ["built"] * 3, report.to_json()
    assert [r.attempts for r in report.results] == [1, 2, 1]
    assert report.to_json()["retried"] == 1
    # Progress came per task, the retried one saying which attempt it was on.
    assert {i for i, _ in seen} == {0, 1, 2}
    assert any(i == 1 and "attempt 2" in msg for i, msg in seen)

    a, b = entry_files(tmp_path / "serial"), entry_files(tmp_path / "ray")
    assert len(a) == 3 * 9 and a.keys() == b.keys()
    assert {k: v[0] for k, v in a.items()} == {k: v[0] for k, v in b.items()}

    # Again: every entry is found, nothing is written.
    again = run_sweep(opts.__class__(models, tmp_path / "ray", device="cpu", engine="ray"))
    assert [r.state for r in again.results] == ["cached"] * 3
    assert entry_files(tmp_path / "ray") == b


def test_a_failing_model_is_reported_and_the_rest_built(
    cluster: None, models, tmp_path: Path
) -> None:
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    report = run_sweep(
        SweepOptions(
            (models[0], str(bad)), tmp_path / "c", device="cpu", engine="ray", max_retries=1
        )
    )
    ok, failed = report.results
    assert ok.state == "built" and failed.state == "failed"
    # An exception inside the build fails the same way again: reported, not retried.
    assert failed.attempts == 1 and failed.error and "\n" not in failed.error


def test_cli_sweep_local_then_cached(capsys, models, tmp_path: Path) -> None:
    args = [
        "sweep",
        "--models",
        ",".join(models[:2]),
        "--cache-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "--json",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["built"], first["cached"], first["failed"]) == (2, 0, 0)
    before = entry_files(tmp_path)
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cached"] == 2 and "[task 1]" in err
    assert entry_files(tmp_path) == before
    assert (
        main(["sweep", "--models", models[0], "--what", "everything", "--cache-dir", str(tmp_path)])
        == 2
    )
    assert "Cannot sweep 'everything'" in capsys.readouterr().err
