"""``train.py --checkpoints``: log-spaced steps, and each saved step is a checkpoint the
core opens, listed in training order."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from core.compare import list_checkpoints
from core.model.loading import resolve_model
from tests.tiny_models import make_hf_model, make_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def _train_module():
    spec = importlib.util.spec_from_file_location(
        "demo_train", ROOT / "scripts/demo_model/train.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_log_spaced_steps_and_saved_series(tmp_path: Path) -> None:
    train = _train_module()
    assert train.log_steps(20) == [0, 1, 2, 4, 8, 16]
    model, tok = make_hf_model("gpt2"), make_tokenizer()
    for step in (0, 1, 2, 4, 8, 16, 100):
        train.save_series_checkpoint(model, tok, tmp_path, step)
    found = list_checkpoints(tmp_path)
    assert [p.name for p in found] == [f"step-{s:06d}" for s in (0, 1, 2, 4, 8, 16, 100)]
    assert resolve_model(str(found[-1])) == str(found[-1].resolve())
    assert (found[0] / "model.safetensors").is_file() and (found[0] / "tokenizer.json").is_file()
