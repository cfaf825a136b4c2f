"""Tiny random-init checkpoints of the three architectures, built from configs.

Each is saved as a Hugging Face directory (weights + a byte-level BPE tokenizer trained
here on a few sentences), so tests load them exactly as a user's local checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ARCHS = ("gpt2", "neox", "llama")  # core.model.families names
VOCAB = 320
TEXT = (
    "the fire burned with hot flames and smoke while ice and snow froze the cold water "
    "a cat and a dog ran across the green field to the river where fish swim "
    "one two three four five six seven eight nine ten numbers count the days "
    "red blue yellow green colours paint the house king queen prince castle war army "
)


def make_tokenizer(vocab_size: int = VOCAB) -> Any:
    """A byte-level BPE fast tokenizer with ``vocab_size`` entries."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT] * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


#: Per family: its shape in generic names (read through the family's config keys), and
#: settings passed to the config as they are.
SHAPES: dict[str, dict[str, int]] = {
    "gpt2": {"n_layers": 2, "d_model": 64, "n_heads": 4, "n_ctx": 64},
    "neox": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_mlp": 256, "n_ctx": 64},
    "llama": {
        "n_layers": 2,
        "d_model": 64,
        "n_heads": 4,
        "n_kv_heads": 2,  # grouped-query attention: two query heads per value head
        "d_mlp": 128,
        "n_ctx": 64,
    },
}
EXTRA: dict[str, dict[str, Any]] = {"neox": {"use_parallel_residual": True}}


def make_hf_model(arch: str, vocab_size: int = VOCAB, seed: int = 0, **overrides: Any) -> Any:
    """A random-init causal LM of family ``arch`` (gpt2, neox, llama) in eval mode."""
    import transformers

    from core.model.families import FAMILIES

    family = FAMILIES[arch]
    shape = {**SHAPES[arch], "d_vocab": vocab_size}
    keys = {family.config_keys[k]: v for k, v in shape.items()}
    torch.manual_seed(seed)
    cfg = getattr(transformers, family.config_class)(**keys, **EXTRA.get(arch, {}))
    cls = getattr(transformers, family.model_class)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    model = cls(cfg).eval()
    # Random-init LayerNorm/RMSNorm weights are all ones; perturb them so folding matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln" in name):
                p.mul_(1 + 0.3 * torch.rand_like(p))
                if name.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
    return model


def save_checkpoint(arch: str, directory: Path, seed: int = 0) -> Path:
    """Write a tiny ``arch`` checkpoint (weights + tokenizer) to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    make_hf_model(arch, seed=seed).save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return directory
