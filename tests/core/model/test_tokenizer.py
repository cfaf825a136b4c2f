"""The tokenizer read from tokenizer.json encodes as the model's own tokenizer does."""

from __future__ import annotations

from pathlib import Path

from core.model.tokenizer import file_tokenizer
from core.settings import DEFAULT_MODEL_DIR

WORDS = [
    "fire",
    " fire",
    "flames",
    " water",
    "The house was on",
    "king, queen",
    "ünïcödé",
    "  two spaces",
    "\n",
    "3.14",
    "<|endoftext|>",
    "",
]


def _dirs(checkpoints: dict[str, Path]) -> list[Path]:
    return [*checkpoints.values(), DEFAULT_MODEL_DIR]


def test_same_ids_as_the_model_tokenizer(checkpoints: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    for d in _dirs(checkpoints):
        ours = file_tokenizer(d)
        assert ours is not None, d
        theirs = AutoTokenizer.from_pretrained(d)
        assert len(ours) == len(theirs)
        assert ours.unk_token == theirs.unk_token and ours.unk_token_id == theirs.unk_token_id
        for w in WORDS:
            assert ours.encode(w, add_special_tokens=False) == list(
                theirs.encode(w, add_special_tokens=False)
            ), (d, w)


def test_no_tokenizer_json_means_none(tmp_path: Path) -> None:
    assert file_tokenizer(tmp_path) is None
    (tmp_path / "tokenizer.json").write_text("not json")
    assert file_tokenizer(tmp_path) is None


def test_a_disagreeing_prefix_space_is_left_to_transformers(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    import json
    import shutil

    src = checkpoints["gpt2"]
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, tmp_path / f)
    conf = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**conf, "add_prefix_space": True}))
    assert file_tokenizer(tmp_path) is None
