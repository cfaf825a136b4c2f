"""Random-weight models for the benchmark and the tests (no download).

:func:`make_model` draws real GPT-2 shapes; :func:`random_weights` draws small models with an
isotropic or a trained-like (clustered, anisotropic) unembedding for the search tests and the
self-retrieval benchmark.

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

from core.model.weights import ModelMeta, ModelWeights, hash_tensors
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
    "smollm2-135m": (30, 576, 9, 49152),
}
#: MLP widths of the shapes whose MLP is not ``4 * n_embd``. ``smollm2-135m`` is
#: SmolLM2-135M's size (GPT-2-style random weights: its grouped-query attention shares
#: ``W_V`` between heads, which changes no matrix a precompute decomposes, and its gate
#: matrix is not among the benchmark's kinds).
INNER: dict[str, int] = {"smollm2-135m": 1536}


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
        n_inner=INNER.get(name),
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


def number_vocab(d_vocab: int) -> list[str]:
    """``w0 .. w{h-1}`` then `` w0 .. w{h-1}`` (``h = d_vocab // 2``): token ``i`` is a
    word, token ``h + i`` the same word with a leading space, so queries are easy to write.
    """
    half = d_vocab // 2
    words = [f"w{i}" for i in range(half)]
    return (words + [" " + w for w in words] + [f"x{i}" for i in range(d_vocab - 2 * half)])[
        :d_vocab
    ]


def number_tokenizer(d_vocab: int) -> SyntheticTokenizer:
    """A :class:`SyntheticTokenizer` over :func:`number_vocab` (``w12`` finds id 12 and,
    with the leading space that query parsing also tries, ``d_vocab // 2 + 12``).
    """
    return SyntheticTokenizer(number_vocab(d_vocab))


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


def random_weights(
    n_layers: int,
    n_heads: int,
    d_model: int,
    d_mlp: int,
    d_vocab: int,
    seed: int = 0,
    name: str = "random",
    clusters: int = 0,
    decay: float = 0.0,
) -> ModelWeights:
    """GPT-2-initialised random weights (normal, std 0.02; untied ``W_U``), raw view.

    LayerNorm scales are ones, so ``post`` processing only centres. With ``clusters``,
    the unembedding is shaped like a trained one instead: each token's column is its
    cluster's centroid plus noise (tokens of a cluster share top-token lists, as words
    of a topic do), the spectrum falls by ``decay`` decades across ``d_model``, and
    ``W_E = W_U^T`` (tied).
    """
    g = torch.Generator().manual_seed(seed)
    d_head = d_model // n_heads

    def rnd(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    t: dict[str, Any] = dict(
        W_Q=rnd(n_layers, n_heads, d_model, d_head),
        W_K=rnd(n_layers, n_heads, d_model, d_head),
        W_V=rnd(n_layers, n_heads, d_model, d_head),
        W_O=rnd(n_layers, n_heads, d_head, d_model),
        W_in=rnd(n_layers, d_model, d_mlp),
        W_gate=None,
        W_out=rnd(n_layers, d_mlp, d_model),
        W_E=rnd(d_vocab, d_model),
        W_U=rnd(d_model, d_vocab),
        ln1_w=torch.ones(n_layers, d_model),
        ln2_w=torch.ones(n_layers, d_model),
        lnf_w=torch.ones(d_model),
    )
    if clusters:
        centroids = torch.randn(clusters, d_model, generator=g)
        label = torch.randint(0, clusters, (d_vocab,), generator=g)
        cols = centroids[label] + 0.6 * torch.randn(d_vocab, d_model, generator=g)
        cols = 0.02 * cols * torch.logspace(0, -decay, d_model)
        t["W_U"], t["W_E"] = cols.T.contiguous(), cols.contiguous()
    meta = ModelMeta(
        name=name,
        architecture="GPT2LMHeadModel",
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_heads,
        d_model=d_model,
        d_head=d_head,
        d_mlp=d_mlp,
        d_vocab=d_vocab,
        normalization="LN",
        gated=False,
        parallel_attn_mlp=False,
        weights_hash=hash_tensors(t),
    )
    return ModelWeights(meta=meta, processing="raw", **t)


def dir_size_mb(path: Path) -> float:
    """Total size of the files under ``path`` in MiB."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20
