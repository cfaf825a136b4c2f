"""Random-weight models of real GPT-2 shapes for the benchmark (no download).

A :class:`BenchModel` holds raw :class:`~core.model.weights.ModelWeights` drawn with GPT-2's
initialisation, a synthetic vocabulary with a tokenizer-like object, and exposes
``cfg`` and ``tl_parameters()`` (views, no copies) so TransformerLens's
``SVDInterpreter`` runs on it exactly as on a ``TransformerBridge``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from core.model.weights import ModelMeta, ModelWeights
from core.settings import DEFAULT_MODEL_DIR

#: name -> (n_layer, n_embd, n_head, vocab). ``tiny`` is for tests; ``demo`` is the
#: embedded demo model's shape (read from its config.json when present).
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (2, 64, 4, 1000),
    "demo": (4, 256, 4, 8192),
    "gpt2-small": (12, 768, 12, 50257),
    "gpt2-medium": (24, 1024, 16, 50257),
    "gpt2-large": (36, 1280, 20, 50257),
    "gpt2-xl": (48, 1600, 25, 50257),
}


def shape_config(name: str) -> Any:
    """A ``GPT2Config`` for a benchmark shape name (``KeyError`` if unknown)."""
    from transformers import GPT2Config

    n_layer, n_embd, n_head, vocab = SHAPES[name]
    if name == "demo" and (DEFAULT_MODEL_DIR / "config.json").is_file():
        cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
        n_layer = int(cfg.get("n_layer", n_layer))
        n_embd = int(cfg.get("n_embd", n_embd))
        n_head = int(cfg.get("n_head", n_head))
        vocab = int(cfg.get("vocab_size", vocab))
    return GPT2Config(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        vocab_size=vocab,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
    )


_ONSETS = ("", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w")
_VOWELS = ("a", "e", "i", "o", "u", "y")


def synthetic_vocab(size: int) -> list[str]:
    """``size`` distinct token strings: word-like (most with a leading space), with every
    fifth one carrying a digit or punctuation so the ``alpha`` filter has work to do.
    """
    syll = [o + v for o in _ONSETS for v in _VOWELS]
    out = []
    for i in range(size):
        word, j = "", i
        while True:
            word += syll[j % len(syll)]
            j //= len(syll)
            if j == 0:
                break
            j -= 1
        if i % 5 == 4:
            word += "0123456789.,;!?-"[i % 16]
        out.append((" " if i % 3 else "") + word)
    return out


class SyntheticTokenizer:
    """The parts of a Hugging Face tokenizer that ``token_table`` and search use."""

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.lookup = {t: i for i, t in enumerate(vocab)}
        self.unk_token_id = None

    def __len__(self) -> int:
        return len(self.vocab)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        """GPT-2 style pieces (a leading space shown as ``Ġ``)."""
        return [self.vocab[i].replace(" ", "\u0120") for i in ids]

    def decode(self, ids: list[int]) -> str:
        """The concatenated token strings."""
        return "".join(self.vocab[int(i)] for i in ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """One id for an exact vocabulary entry, else none."""
        i = self.lookup.get(text)
        return [] if i is None else [i]


@dataclass
class BenchModel:
    """A random model: raw weights, tokenizer, and the TransformerLens weight surface."""

    name: str
    raw: ModelWeights
    tokenizer: SyntheticTokenizer
    cfg: Any

    def tl_parameters(self) -> dict[str, Tensor]:
        """TransformerLens-style names -> views of the raw weights."""
        w = self.raw
        p: dict[str, Tensor] = {"embed.W_E": w.W_E, "unembed.W_U": w.W_U}
        assert w.lnf_w is not None and w.ln1_w is not None and w.ln2_w is not None
        p["ln_final.w"] = w.lnf_w
        for i in range(w.meta.n_layers):
            b = f"blocks.{i}."
            p[b + "attn.W_Q"], p[b + "attn.W_K"] = w.W_Q[i], w.W_K[i]
            p[b + "attn.W_V"], p[b + "attn.W_O"] = w.W_V[i], w.W_O[i]
            p[b + "mlp.W_in"], p[b + "mlp.W_out"] = w.W_in[i], w.W_out[i]
            p[b + "ln1.w"], p[b + "ln2.w"] = w.ln1_w[i], w.ln2_w[i]
        return p


def make_model(name: str, seed: int = 0) -> BenchModel:
    """Random weights of the named shape with GPT-2's initialisation.

    Weights are N(0, 0.02), output projections N(0, 0.02 / sqrt(2 n_layer)), LayerNorm
    scales 1 + N(0, 0.05) (so the ``post`` folding matters), ``W_U = W_E^T`` (tied).
    """
    return random_model(shape_config(name), name, seed)


def random_model(cfg: Any, name: str, seed: int = 0) -> BenchModel:
    """A :class:`BenchModel` with random weights for a ``GPT2Config`` (see :func:`make_model`)."""
    L, d, H, V = cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size
    m = cfg.n_inner or 4 * d
    dh = d // H
    g = torch.Generator().manual_seed(seed)
    std, out_std = cfg.initializer_range, cfg.initializer_range / math.sqrt(2 * L)

    def rnd(*shape: int, s: float = std) -> Tensor:
        return torch.randn(shape, generator=g).mul_(s)

    W_E = rnd(V, d)
    meta = ModelMeta(
        name=f"bench-{name}",
        architecture="GPT2LMHeadModel",
        n_layers=L,
        n_heads=H,
        n_kv_heads=H,
        d_model=d,
        d_head=dh,
        d_mlp=m,
        d_vocab=V,
        normalization="LN",
        gated=False,
        parallel_attn_mlp=False,
        # Cheap and unique per shape and seed; hashing GBs of random weights adds nothing.
        weights_hash=hashlib.blake2b(f"{name}:{seed}:{L}:{d}:{H}:{V}".encode()).hexdigest()[:32],
    )
    raw = ModelWeights(
        meta=meta,
        processing="raw",
        W_Q=rnd(L, H, d, dh),
        W_K=rnd(L, H, d, dh),
        W_V=rnd(L, H, d, dh),
        W_O=rnd(L, H, dh, d, s=out_std),
        W_in=rnd(L, d, m),
        W_gate=None,
        W_out=rnd(L, m, d, s=out_std),
        W_E=W_E,
        W_U=W_E.T.contiguous(),
        ln1_w=1 + rnd(L, d, s=0.05),
        ln2_w=1 + rnd(L, d, s=0.05),
        lnf_w=1 + rnd(d, s=0.05),
    )
    tl_cfg = SimpleNamespace(
        n_layers=L, n_heads=H, d_model=d, d_head=dh, d_mlp=m, d_vocab=V, normalization_type="LN"
    )
    return BenchModel(name, raw, SyntheticTokenizer(synthetic_vocab(V)), tl_cfg)


def dir_size_mb(path: Path) -> float:
    """Total size of the files under ``path`` in MiB."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20
