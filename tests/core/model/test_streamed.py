"""The per-layer reader against TransformerLens: every tensor of the weight view, read
layer by layer from the safetensors files, equals the one the bridge's
``tl_parameters()`` gives (values and layout), and the streamed weights hash equals the
hash of the whole stacked view."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.errors import ModelLoadError
from core.model.loading import load_model
from core.model.source import raw_weights
from core.model.streamed import CheckpointReader, layer_weights, streamed_meta
from core.settings import Settings
from tests.tiny_models import ARCHS

NAMES = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out", "ln1_w", "ln2_w")


@pytest.mark.parametrize("arch", ARCHS)
def test_reader_equals_the_bridge(checkpoints: dict[str, Path], arch: str) -> None:
    path = checkpoints[arch]
    raw = raw_weights(load_model(Settings(model=str(path), device="cpu"), bridge=True))
    reader = CheckpointReader(path)
    meta = streamed_meta(reader, raw.meta.name)
    assert meta == raw.meta  # shapes, architecture, flags and the weights hash
    whole = layer_weights(reader, meta, range(reader.n_layers))
    for name in (*NAMES, "W_E", "W_U", "lnf_w"):
        a, b = getattr(whole, name), getattr(raw, name)
        if b is None:
            assert a is None, name
            continue
        assert a.shape == b.shape and torch.equal(a, b), name
    assert whole.W_U.stride() == raw.W_U.stride()
    # One layer alone is that layer of the stack.
    one = layer_weights(reader, meta, range(1, 2))
    assert one.meta.n_layers == 1
    for name in NAMES:
        if getattr(raw, name) is not None:
            assert torch.equal(getattr(one, name)[0], getattr(raw, name)[1]), name


def test_reader_refuses_a_folder_without_safetensors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ModelLoadError, match="safetensors"):
        CheckpointReader(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="model_type 'bert'"):
        CheckpointReader(tmp_path)


def test_the_matched_model_types_are_the_tested_ones(checkpoints: dict[str, Path]) -> None:
    """A model is read without TransformerLens only for the model types the test above
    holds equal to it: the list names exactly the tested checkpoints' types."""
    import json

    from core.model.streamed import MATCHED_MODEL_TYPES, read_checkpoint

    types = {
        json.loads((p / "config.json").read_text())["model_type"] for p in checkpoints.values()
    }
    assert set(MATCHED_MODEL_TYPES) == types
    cfg = checkpoints["llama"] / "config.json"
    conf = json.loads(cfg.read_text())
    other = cfg.parent.parent / "as-mistral"
    other.mkdir()
    for f in cfg.parent.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "config.json").write_text(json.dumps({**conf, "model_type": "mistral"}))
    read_checkpoint(other, "m")  # the reader knows the family ...
    with pytest.raises(ModelLoadError, match="mistral"):
        read_checkpoint(other, "m", matched_only=True)  # ... but it is not matched


@pytest.mark.parametrize("arch", ARCHS)
def test_a_loaded_module_reads_as_its_files(checkpoints: dict[str, Path], arch: str) -> None:
    """``module_weights`` (a model loaded without the bridge) gives the files' view, hash
    included, and copies: writing into the view leaves the model as it was."""
    from core.model.streamed import module_weights, read_checkpoint

    path = checkpoints[arch]
    files = read_checkpoint(path, "m")
    model = load_model(Settings(model=str(path), device="cpu")).hf_model
    view = module_weights(model, "m")
    assert view.meta == files.meta
    for name in (*NAMES, "W_E", "W_U", "lnf_w"):
        a, b = getattr(view, name), getattr(files, name)
        assert (a is None and b is None) or torch.equal(a, b), name
    before = model.get_input_embeddings().weight.clone()
    view.W_E.zero_()
    view.W_U.zero_()
    assert torch.equal(model.get_input_embeddings().weight, before)
    assert torch.equal(model.get_output_embeddings().weight.T, files.W_U)
