"""A checkpoint's weights read layer by layer from its safetensors files, without a model.

A sweep over a model too big for one worker's memory splits into per-layer tasks
(:mod:`core.sweep.layers`); each needs one layer's matrices and ``W_U``, not the model.
:class:`CheckpointReader` memory-maps the files (``safe_open``) and converts the tensors
one layer needs into the layout :func:`core.model.weights.weights_from_params` builds
from TransformerLens (the tests hold the two equal, tensor for tensor), using only the
family's data (:mod:`core.model.families`): where each weight lives and how a fused
query/key/value weight is laid out.

:func:`streamed_meta` gives the same :class:`~core.model.weights.ModelMeta` as a full
load, weights hash included: :func:`~core.model.weights.hash_tensors` hashes each
stacked tensor's bytes, which are its layers' bytes one after another, so the digest is
computed one layer at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.errors import ModelLoadError
from core.model.families import Family, family_for
from core.model.weights import HASHED, ModelMeta, ModelWeights, hash_bytes, hash_tensors

#: Per-layer tensors of the weight view, as :class:`ModelWeights` names them (stacked).
LAYER_KEYS = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out", "ln1_w", "ln2_w")


class CheckpointReader:
    """One local Hugging Face checkpoint's weights, read tensor by tensor.

    Attributes:
        directory: the checkpoint folder.
        config: its ``config.json``.
        family: its architecture family.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        cfg_path = self.directory / "config.json"
        try:
            self.config: dict[str, Any] = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            raise ModelLoadError(
                f"{self.directory} has no readable config.json; give a Hugging Face "
                "checkpoint folder."
            ) from None
        self.family: Family = family_for(str(self.config.get("model_type", "")), ModelLoadError)
        self._where = self._index()
        self._handles: dict[Path, Any] = {}

    def _index(self) -> dict[str, Path]:
        files = sorted(self.directory.glob("*.safetensors"))
        if not files:
            raise ModelLoadError(
                f"{self.directory} has no .safetensors weights; a per-layer split reads "
                "safetensors only (save the model with safe_serialization=True)."
            )
        from safetensors import safe_open

        where: dict[str, Path] = {}
        for f in files:
            with safe_open(str(f), "pt") as s:
                for key in s.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                    where[key] = f
        return where

    def _cfg(self, name: str) -> int:
        return int(self.config[self.family.config_keys[name]])

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return self._cfg("n_layers")

    @property
    def n_heads(self) -> int:
        """Query heads."""
        return self._cfg("n_heads")

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads (``n_heads`` without grouped-query attention)."""
        key = self.family.config_keys.get("n_kv_heads")
        value = self.config.get(key) if key else None
        return int(value) if value else self.n_heads

    @property
    def d_head(self) -> int:
        """Width of one head."""
        value = self.config.get("head_dim")
        return int(value) if value else self._cfg("d_model") // self.n_heads

    def has(self, name: str) -> bool:
        """Whether the files hold tensor ``name``."""
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        """Tensor ``name``'s shape, from the file's header (no data read)."""
        return tuple(self._handle(name).get_slice(name).get_shape())

    def _handle(self, name: str) -> Any:
        from safetensors import safe_open

        path = self._where.get(name)
        if path is None:
            raise ModelLoadError(
                f"{self.directory} has no tensor {name}; is it a complete checkpoint?"
            )
        handle = self._handles.get(path)
        if handle is None:
            handle = self._handles[path] = safe_open(str(path), "pt")
        return handle

    def d_mlp(self) -> int:
        """The MLP's width (from the header of layer 0's input matrix)."""
        shape = self.shape(f"{self.family.path('mlp_in', 0)}.weight")
        return shape[0] if self.family.transposed else shape[1]

    def gated(self) -> bool:
        """Whether the MLP has a gate."""
        return "mlp_gate" in self.family.modules and self.has(
            f"{self.family.path('mlp_gate', 0)}.weight"
        )

    def tensor(self, name: str) -> Tensor:
        """Tensor ``name`` as float32 (read from the memory-mapped file)."""
        return self._handle(name).get_tensor(name).to(torch.float32)

    def _matrix(self, role: str, layer: int) -> Tensor:
        """The ``x @ W`` matrix of ``role`` in ``layer``."""
        w = self.tensor(f"{self.family.path(role, layer)}.weight")
        return w.T if self.family.transposed else w

    def _heads(self, w: Tensor, n: int) -> Tensor:
        """``[d_model, n * d_head]`` -> ``[n, d_model, d_head]``."""
        return w.reshape(w.shape[0], n, self.d_head).permute(1, 0, 2)

    def attention(self, layer: int) -> dict[str, Tensor]:
        """``W_Q``, ``W_K``, ``W_V`` ``[n_heads, d_model, d_head]`` and ``W_O``
        ``[n_heads, d_head, d_model]`` of ``layer``; grouped key/value heads are repeated
        for each query head of their group, as TransformerLens does.
        """
        nh, dh = self.n_heads, self.d_head
        layout = self.family.qkv_layout
        if layout == "concat":
            w = self._matrix("qkv", layer)  # [d_model, 3 * nh * dh]
            q, k, v = (self._heads(w[:, i * nh * dh : (i + 1) * nh * dh], nh) for i in range(3))
        elif layout == "per_head":
            w = self.tensor(f"{self.family.path('qkv', layer)}.weight")  # [nh * 3 * dh, d]
            w = w.reshape(nh, 3, dh, -1)
            q, k, v = (w[:, i].transpose(1, 2) for i in range(3))
        elif layout == "separate":
            group = nh // self.n_kv_heads
            q = self._heads(self._matrix("q", layer), nh)
            k, v = (
                self._heads(self._matrix(r, layer), self.n_kv_heads).repeat_interleave(group, 0)
                for r in ("k", "v")
            )
        else:  # a family whose data names a layout this reader does not know
            raise ModelLoadError(f"Unknown query/key/value layout {layout!r}.")
        o = self._matrix("attn_out", layer).reshape(nh, dh, -1)
        return {"W_Q": q, "W_K": k, "W_V": v, "W_O": o}

    def layer_tensor(self, layer: int, key: str) -> Tensor | None:
        """One tensor of :data:`LAYER_KEYS` for ``layer``, reading only what it needs."""
        if key in ("W_Q", "W_K", "W_V", "W_O"):
            return self.attention(layer)[key]
        if key == "W_gate":
            return self._matrix("mlp_gate", layer) if self.gated() else None
        if key in ("W_in", "W_out"):
            return self._matrix("mlp_in" if key == "W_in" else "mlp_out", layer)
        role = {"ln1_w": "ln1", "ln2_w": "ln2"}[key]
        return self.tensor(f"{self.family.path(role, layer)}.weight")

    def layer(self, layer: int) -> dict[str, Tensor | None]:
        """Every per-layer tensor of :data:`LAYER_KEYS` for ``layer`` (unstacked)."""
        out: dict[str, Tensor | None] = dict(self.attention(layer))
        out["W_in"] = self._matrix("mlp_in", layer)
        out["W_gate"] = (
            self._matrix("mlp_gate", layer) if "mlp_gate" in self.family.modules else None
        )
        out["W_out"] = self._matrix("mlp_out", layer)
        out["ln1_w"] = self.tensor(f"{self.family.path('ln1', layer)}.weight")
        out["ln2_w"] = self.tensor(f"{self.family.path('ln2', layer)}.weight")
        return out

    def embed(self) -> Tensor:
        """``W_E`` ``[d_vocab, d_model]``."""
        return self.tensor(f"{self.family.embed}.weight")

    def unembed(self) -> Tensor:
        """``W_U`` ``[d_model, d_vocab]`` (the embedding's transpose when tied).

        A transposed view, laid out as TransformerLens lays it out: a reduction over a
        differently strided copy may round differently, and the entry must not depend
        on which path read the weights.
        """
        name = f"{self.family.unembed}.weight"
        return (self.tensor(name) if self.has(name) else self.embed()).T

    def final_norm(self) -> Tensor:
        """The final norm's scale ``[d_model]``."""
        return self.tensor(f"{self.family.final_norm}.weight")

    def architecture(self) -> str:
        """The Hugging Face architecture name."""
        archs = self.config.get("architectures") or [self.family.model_class]
        return str(archs[0])

    def parallel(self) -> bool:
        """Whether attention and MLP read the same residual stream (NeoX's default)."""
        return self.family.name == "neox" and bool(self.config.get("use_parallel_residual", True))


def header_meta(reader: CheckpointReader, name: str, weights_hash: str = "") -> ModelMeta:
    """The model's :class:`ModelMeta` from its config and the files' headers, reading no
    weight (``weights_hash`` as given: :func:`streamed_meta` computes the real one).
    """
    d_vocab, d_model = reader.shape(f"{reader.family.embed}.weight")
    unembed = f"{reader.family.unembed}.weight"
    if reader.has(unembed):
        d_vocab = reader.shape(unembed)[0]
    return ModelMeta(
        name=name,
        architecture=reader.architecture(),
        n_layers=reader.n_layers,
        n_heads=reader.n_heads,
        n_kv_heads=reader.n_kv_heads,
        d_model=d_model,
        d_head=reader.d_head,
        d_mlp=reader.d_mlp(),
        d_vocab=d_vocab,
        normalization=reader.family.normalization,
        gated=reader.gated(),
        parallel_attn_mlp=reader.parallel(),
        weights_hash=weights_hash,
    )


def streamed_meta(reader: CheckpointReader, name: str) -> ModelMeta:
    """The model's :class:`ModelMeta`, its weights hash computed one tensor at a time (the
    same digest :func:`core.model.weights.hash_tensors` gives the stacked view).
    """
    meta = header_meta(reader, name)
    whole = {"W_E": reader.embed(), "W_U": reader.unembed(), "lnf_w": reader.final_norm()}
    L = reader.n_layers
    h = hashlib.blake2b(digest_size=16)
    keys = sorted([*whole, *(k for k in LAYER_KEYS if k != "W_gate" or meta.gated)])
    for key in keys:
        if key in whole:
            t = whole[key]
            h.update(f"{key}:{tuple(t.shape)}".encode())
            hash_bytes(h, t)
            continue
        for layer in range(L):
            lt = reader.layer_tensor(layer, key)
            assert lt is not None
            if layer == 0:
                h.update(f"{key}:{(L, *lt.shape)}".encode())
            hash_bytes(h, lt)
    return dataclasses.replace(meta, weights_hash=h.hexdigest())


def layer_weights(reader: CheckpointReader, meta: ModelMeta, layers: range) -> ModelWeights:
    """The raw view of ``layers`` alone (``meta.n_layers`` = their count; the embedding,
    unembedding and final norm of the whole model).
    """
    parts = [reader.layer(i) for i in layers]

    def stack(key: str) -> Tensor | None:
        if parts[0][key] is None:
            return None
        return torch.stack([p[key] for p in parts])  # type: ignore[misc]

    sub = ModelMeta(**{**meta.to_json(), "n_layers": len(layers)})
    return ModelWeights(
        meta=sub,
        processing="raw",
        W_E=reader.embed(),
        W_U=reader.unembed(),
        lnf_w=reader.final_norm(),
        **{k: stack(k) for k in LAYER_KEYS},  # type: ignore[arg-type]
    )


#: The ``model_type`` values whose checkpoints the tests hold this reader equal to
#: TransformerLens on (``tests/core/model/test_streamed.py``): a model is read without
#: TransformerLens (:func:`read_checkpoint` with ``matched_only``) only for these.
MATCHED_MODEL_TYPES = ("gpt2", "gpt_neox", "llama")


def read_checkpoint(
    directory: Path | str,
    name: str,
    matched_only: bool = False,
    weights_hash: str | None = None,
) -> ModelWeights:
    """The raw view of the whole checkpoint in ``directory``, read from its safetensors
    files without TransformerLens or a model: equal, tensor for tensor and hash included,
    to the view a loaded model gives (:func:`core.model.source.raw_weights`; the tests
    hold the two equal). Building a cache entry needs no more than this.

    ``weights_hash``: the weights' hash when it is known already (the folder kept the
    fingerprint of a cache entry built from them): hashing every weight again took as
    long as reading them.

    Raises:
        ModelLoadError: the folder is not a checkpoint this reader knows (with
            ``matched_only``: nor one of :data:`MATCHED_MODEL_TYPES`).
    """
    reader = CheckpointReader(directory)
    model_type = str(reader.config.get("model_type", ""))
    if matched_only and model_type not in MATCHED_MODEL_TYPES:
        raise ModelLoadError(f"model_type {model_type!r} is not read without TransformerLens.")
    return _whole(reader, name, weights_hash)


def module_weights(module: Any, name: str) -> ModelWeights:
    """The raw view of a loaded Hugging Face model of one of
    :data:`MATCHED_MODEL_TYPES`, read as :func:`read_checkpoint` reads its files (a model
    loaded without TransformerLens has no bridge to view it; the tests hold the two views
    equal). The tensors are copies: the view never shares memory with the model.
    """
    return _whole(ModuleReader(module), name, None)


def _whole(reader: CheckpointReader, name: str, weights_hash: str | None) -> ModelWeights:
    whole = layer_weights(reader, header_meta(reader, name), range(reader.n_layers))
    if weights_hash is None:
        weights_hash = hash_tensors({key: getattr(whole, key) for key in HASHED})
    return whole.replace(meta=dataclasses.replace(whole.meta, weights_hash=weights_hash))


class ModuleReader(CheckpointReader):
    """A loaded Hugging Face model's weights, read by their checkpoint names: its state
    dict's keys, except the embeddings, which are asked for by role (``transformers``
    5.14 renamed NeoX's ``embed_out`` module to ``lm_head`` but still writes
    ``embed_out.weight`` to the files). A tied unembedding is read as the embedding's
    transpose either way.
    """

    def __init__(self, module: Any) -> None:
        self.config = module.config.to_dict()
        self.directory = Path(str(self.config.get("_name_or_path") or "."))
        self.family = family_for(str(self.config.get("model_type", "")), ModelLoadError)
        self._tensors: dict[str, Tensor] = dict(module.state_dict())
        self._tensors[f"{self.family.embed}.weight"] = module.get_input_embeddings().weight
        self._tensors[f"{self.family.unembed}.weight"] = module.get_output_embeddings().weight
        self._where = {}
        self._handles = {}

    def has(self, name: str) -> bool:
        return name in self._tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._get(name).shape)

    def tensor(self, name: str) -> Tensor:
        return self._get(name).detach().to(torch.float32, copy=True)

    def _get(self, name: str) -> Tensor:
        if name not in self._tensors:
            raise ModelLoadError(f"The loaded model has no tensor {name}.")
        return self._tensors[name]
