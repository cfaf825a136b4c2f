"""Model loading under concurrency: loads at once in one process all succeed, give the
weights a serial load gives, and a failed load leaves the process able to load again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from core.errors import ModelLoadError
from core.model.loading import load_model
from core.settings import Settings


def _state(path: Path, processing: str = "post") -> dict[str, torch.Tensor]:
    m = load_model(Settings(model=str(path), processing=processing, device="cpu"))  # type: ignore[arg-type]
    return {k: v.detach().clone() for k, v in m.hf_model.state_dict().items()}


def _at_once(jobs: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    """Run ``jobs`` in threads released together; their results and errors."""
    start = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results, errors


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("trial", range(3))
def test_two_loads_at_once_match_a_serial_load(checkpoints, trial: int) -> None:
    """The same checkpoint under post and raw at once (two sessions toggling processing),
    and a second architecture beside them."""
    gpt2, neox = checkpoints["gpt2"], checkpoints["neox"]
    serial = _state(gpt2)
    results, errors = _at_once(
        [lambda: _state(gpt2, "post"), lambda: _state(gpt2, "raw"), lambda: _state(neox)]
    )
    assert not errors, errors
    assert _same(results[0], serial) and _same(results[1], serial)  # type: ignore[arg-type]
    assert _same(results[2], _state(neox))  # type: ignore[arg-type]


def test_a_failed_load_leaves_the_process_able_to_load(checkpoints, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in checkpoints["gpt2"].iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    for w in broken.glob("*.safetensors"):
        w.write_bytes(b"not a safetensors file")
    serial = _state(checkpoints["gpt2"])
    results, errors = _at_once([lambda: _state(broken), lambda: _state(checkpoints["gpt2"])])
    assert len(errors) == 1 and isinstance(errors[0], ModelLoadError), errors
    assert _same(results[1], serial)  # type: ignore[arg-type]
    assert _same(_state(checkpoints["gpt2"]), serial)
