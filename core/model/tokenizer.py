"""A checkpoint's tokenizer read with the ``tokenizers`` library alone.

Search parses a query into token ids; when the analysis comes from the cache, loading
``transformers`` (and the model with it) for that would cost seconds. A Hugging Face
"fast" tokenizer is a ``tokenizer.json`` that ``tokenizers`` runs directly, so this is the
same encoder the model's tokenizer wraps (the tests compare both on the demo model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class FileTokenizer:
    """The part of a Hugging Face tokenizer's interface that search uses.

    Attributes:
        unk_token: the unknown token's text, or ``None``.
        unk_token_id: its id, or ``None``.
    """

    def __init__(self, tokenizer: Any, unk_token: str | None) -> None:
        self._tok = tokenizer
        self.unk_token = unk_token
        self.unk_token_id = None if unk_token is None else tokenizer.token_to_id(unk_token)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``."""
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def __len__(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))


def file_tokenizer(directory: Path | str) -> FileTokenizer | None:
    """The tokenizer in ``directory/tokenizer.json``, or ``None`` when there is none (or
    ``tokenizers`` cannot read it: the caller then loads the model's own).
    """
    root = Path(directory)
    path = root / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path))
    except Exception:  # an unreadable or newer format: the model's tokenizer will do
        return None
    unk: str | None = None
    cfg = root / "tokenizer_config.json"
    if cfg.is_file():
        try:
            conf = json.loads(cfg.read_text())
            pre = tok.pre_tokenizer  # its own JSON: parsing all of tokenizer.json costs more
            prefix = _prefix_spaces(None if pre is None else json.loads(pre.__getstate__()))
        except (OSError, ValueError, AttributeError):
            return None
        # transformers rewrites the pre-tokenizer when the config's add_prefix_space
        # disagrees with tokenizer.json's; this reader would then encode differently.
        if "add_prefix_space" in conf and any(p != conf["add_prefix_space"] for p in prefix):
            return None
        value = conf.get("unk_token")
        # Older configs spell an added token as {"content": ...}.
        unk = value.get("content") if isinstance(value, dict) else value
    return FileTokenizer(tok, unk)


def _prefix_spaces(node: Any) -> list[Any]:
    """Every ``add_prefix_space`` value in a pre-tokenizer's JSON (nested sequences too)."""
    if isinstance(node, dict):
        found = [node["add_prefix_space"]] if "add_prefix_space" in node else []
        return found + [v for child in node.values() for v in _prefix_spaces(child)]
    if isinstance(node, list):
        return [v for child in node for v in _prefix_spaces(child)]
    return []


def hf_tokenizer(directory: Path | str) -> Any:
    """The checkpoint's tokenizer through ``transformers`` (the interface the token table
    reads: ``decode``, ``convert_ids_to_tokens``), without loading the model; ``None``
    when it cannot be read (the caller then loads the model's own).
    """
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
    except Exception:  # any failure: the model's loader then says what is wrong
        return None


def model_tokenizer(directory: Path | str) -> Any:
    """The checkpoint's tokenizer set up as TransformerLens's bridge sets it up
    (``setup_tokenizer``: loaded with ``add_bos_token=True`` where it has a BOS token,
    right padding, and the end-of-text token standing in for a missing EOS, pad or BOS
    token), so a plain Hugging Face load encodes prompts as the bridge does (the tests
    compare both).

    Raises:
        OSError, ValueError: ``transformers`` cannot read it (the model's loader words it).
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(directory), add_bos_token=True)
    except ValueError:  # no BOS token to add (or a template that cannot express it)
        tok = AutoTokenizer.from_pretrained(str(directory))
    if tok.padding_side is None:
        tok.padding_side = "right"
    if tok.eos_token is None:
        tok.eos_token = "<|endoftext|>"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.bos_token is None:
        tok.bos_token = tok.eos_token
    # A role whose token the vocabulary lacks gets it registered, as the bridge does.
    for role in ("pad", "eos", "bos"):
        if getattr(tok, f"{role}_token_id") is None:
            tok.add_special_tokens({f"{role}_token": getattr(tok, f"{role}_token")})
    return tok
