"""Model loading under concurrency: loads at once in one process all succeed, give the
weights a serial load gives, and a failed load leaves the process able to load again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from core.edit.hf import plain_module
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


TEXTS = [
    "The capital of France is",
    "a",
    "Hello <|endoftext|> world",
    "  two spaces\n\nand a blank line",
]


def _same_model(plain, bridged) -> None:
    """Two loads of one checkpoint encode, decode and predict alike."""
    a, b = plain.tokenizer, bridged.tokenizer
    assert plain.bridge is None and bridged.bridge is not None
    for text in TEXTS:
        for special in (True, False):
            assert a.encode(text, add_special_tokens=special) == b.encode(
                text, add_special_tokens=special
            ), (text, special)
        assert a(text)["input_ids"] == b(text)["input_ids"], text
    for attr in ("bos_token", "eos_token", "pad_token", "padding_side"):
        assert getattr(a, attr) == getattr(b, attr), attr
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert len(a) == len(b)
    ids = torch.tensor([b.encode(TEXTS[0])[:5], b.encode(TEXTS[3])[:5]])
    # Forward passes run the plain module rebuilt around a model's tensors (the bridge's
    # wrappers dropped): before this route, that was the bridge-loaded model's.
    with torch.no_grad():
        want = plain_module(bridged.hf_model)(ids).logits
        assert torch.equal(plain_module(plain.hf_model)(ids).logits, want)
        assert torch.equal(plain.hf_model(ids).logits, want)


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_a_plain_load_matches_the_bridge(checkpoints: dict[str, Path], arch: str) -> None:
    """Where the model loads without TransformerLens, its tokenizer and logits are the
    bridge's (TransformerLens's own load is the reference)."""
    s = Settings(model=str(checkpoints[arch]), device="cpu")
    _same_model(load_model(s), load_model(s, bridge=True))


@pytest.mark.parametrize("name", ["default", "smollm2-135m"])
def test_the_embedded_models_load_plain_as_the_bridge_loads_them(name: str) -> None:
    from core.model import embedded

    if not (embedded.directory(name) / "config.json").is_file():  # built by make install
        pytest.skip(f"{name} is not built here")
    s = Settings(model=name, device="cpu")
    _same_model(load_model(s), load_model(s, bridge=True))


def test_a_tokenizer_without_bos_or_pad_is_set_up_as_the_bridge_does(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """No BOS token to add, no pad token: the end-of-text token stands in for both."""
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "no-bos"
    folder.mkdir()
    for f in checkpoints["gpt2"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    old = PreTrainedTokenizerFast.from_pretrained(str(folder))
    for f in folder.glob("*token*"):
        f.unlink()
    tok = PreTrainedTokenizerFast(tokenizer_object=old.backend_tokenizer, eos_token="<|endoftext|>")
    tok.save_pretrained(str(folder))
    s = Settings(model=str(folder), device="cpu")
    plain = load_model(s)
    assert plain.tokenizer.bos_token == plain.tokenizer.pad_token == "<|endoftext|>"
    _same_model(plain, load_model(s, bridge=True))


def test_only_local_checkpoints_of_matched_types_load_plain(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    import json

    from core.model.loading import plain_loadable

    assert all(plain_loadable(str(p)) for p in checkpoints.values())
    conf = json.loads((checkpoints["llama"] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**conf, "model_type": "mistral"}))
    assert not plain_loadable(str(tmp_path))  # a type the tests do not hold equal
    assert not plain_loadable(str(tmp_path / "absent"))
    assert not plain_loadable("EleutherAI/pythia-160m")  # a hub id: the bridge loads it
