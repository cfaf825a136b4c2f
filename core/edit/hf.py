"""Edited Hugging Face models: a plain module sharing the loaded tensors, edits applied
to fresh copies of the edited matrices only, and export as a checkpoint directory.

The TransformerLens bridge wraps the loaded model's submodules; :func:`plain_model`
rebuilds the plain Hugging Face module around the same tensors, so forward passes are
plain Hugging Face ones and an edit replaces (never writes into) a shared tensor.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.analysis import Analysis
from core.edit.rank_one import Edit, EditSet, RankOne, rank_one_updates
from core.errors import CoreError, SpecError
from core.model.families import family_of


def target_module(model: Any, target: tuple[str, int]) -> tuple[Any, bool]:
    """The module holding ``target`` (``(matrix, layer)``) in a plain HF model, and
    whether its ``weight`` is the transpose of the ``x @ W`` matrix (its family's layout,
    :mod:`core.model.families`).
    """
    family = family_of(model)
    name, layer = target
    return family.module(model, name, layer), family.transposed


def plain_model(analysis: Analysis) -> Any:
    """A plain Hugging Face module (no TransformerLens wrappers) sharing the loaded tensors.

    Built on the meta device and filled with the loaded model's own parameters and
    buffers, so it costs no memory; only use it read-only (or replace tensors in it).
    """
    if analysis.model is None:
        raise CoreError("This analysis has no loaded model; open it with open_analysis.")
    return plain_module(analysis.model.hf_model)


def plain_module(hf: Any) -> Any:
    """:func:`plain_model` of a loaded Hugging Face model ``hf`` (wrapped by a bridge or
    not): a module of its class, built on the meta device around its tensors.
    """
    src: dict[str, Tensor] = {}
    for n, t in [
        *hf.named_parameters(remove_duplicate=False),
        *hf.named_buffers(remove_duplicate=False),
    ]:
        src.setdefault(n.replace("._original_component", ""), t)
    with torch.device("meta"):
        plain = type(hf)(hf.config)
    made: dict[int, torch.nn.Parameter] = {}
    for n, _p in list(plain.named_parameters(remove_duplicate=False)):
        s = src[n]
        if id(s) not in made:  # tied weights stay one parameter
            made[id(s)] = torch.nn.Parameter(s.detach(), requires_grad=False)
        _set(plain, n, made[id(s)], parameter=True)
    for n, _ in list(plain.named_buffers(remove_duplicate=False)):
        _set(plain, n, src[n], parameter=False)
    return plain.eval()


def _set(model: Any, name: str, value: Tensor, parameter: bool) -> None:
    mod_name, _, attr = name.rpartition(".")
    mod = model.get_submodule(mod_name) if mod_name else model
    (mod._parameters if parameter else mod._buffers)[attr] = value


def _stored(analysis: Analysis, target: tuple[str, int]) -> Tensor:
    raw, m = analysis.raw, analysis.meta
    name, layer = target
    if name == "attn_out":
        return raw.W_O[layer].reshape(m.n_heads * m.d_head, m.d_model)
    return raw.matrix(name, layer)


@dataclass(frozen=True)
class EditedModel:
    """A Hugging Face model with ``edits`` applied; shares untouched tensors with the
    loaded model (read-only) and owns its edited ones.
    """

    model: Any
    edits: EditSet
    updates: tuple[RankOne, ...]


def apply_edits(analysis: Analysis, edits: EditSet | Iterable[Edit]) -> EditedModel:
    """A new model with ``edits`` applied; the loaded (shared) model is never written.

    Each edited stored matrix is first checked against the analysis's raw view, so a
    layout this module misreads fails loudly instead of editing the wrong weights.
    """
    edits = edits if isinstance(edits, EditSet) else EditSet().add(*edits)
    updates = rank_one_updates(analysis, edits)
    model = plain_model(analysis)
    by_target: dict[tuple[str, int], list[RankOne]] = {}
    for u in updates:
        by_target.setdefault(u.target, []).append(u)
    # One product per matrix: summing hundreds of dense outer products (a truncation
    # removes most of a matrix's directions) costs a full matrix of memory traffic each.
    deltas = {
        target: torch.stack([u.left for u in us]).T @ torch.stack([u.right for u in us])
        for target, us in by_target.items()
    }
    for target, delta in deltas.items():
        mod, transposed = target_module(model, target)
        old = mod.weight.detach()
        W = old.T if transposed else old
        if W.shape != delta.shape or not torch.allclose(
            W.float().cpu(), _stored(analysis, target).float().cpu(), atol=1e-5, rtol=1e-4
        ):
            raise CoreError(
                f"The stored {target[0]} of layer {target[1]} does not match the analysed "
                "weights; reload the model (the cache may be from another checkpoint)."
            )
        new = (W.double() + delta.to(W.device)).to(W.dtype)
        mod._parameters["weight"] = torch.nn.Parameter(
            (new.T if transposed else new).contiguous(), requires_grad=False
        )
    return EditedModel(model, edits, tuple(updates))


def original_tokenizer(analysis: Analysis) -> Any:
    """The model's tokenizer as its checkpoint defines it.

    TransformerLens's bridge switches on ``add_bos_token`` in the tokenizer it loads, so
    saving that one would make the exported model's tokenizer prepend a BOS the original
    never did; this reloads it from the source (the bridge's is the fallback when the
    source cannot be read again).
    """
    assert analysis.model is not None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(analysis.model.source)
    except (OSError, ValueError):
        return analysis.model.tokenizer


def export(analysis: Analysis, edits: EditSet, directory: Path) -> Path:
    """Write the edited model and tokenizer as a Hugging Face checkpoint directory.

    Weights are saved in float32 (the precision the edits were made in); the edits are
    recorded in ``svd_lens_edits.json`` beside them.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise SpecError(f"{directory} is not empty; export into a new or empty directory.")
    edited = apply_edits(analysis, edits)
    directory.mkdir(parents=True, exist_ok=True)
    edited.model.save_pretrained(directory)
    assert analysis.model is not None
    original_tokenizer(analysis).save_pretrained(directory)
    record = {
        "source": analysis.model.source,
        "processing": analysis.weights.processing,
        "edits": [dataclasses.asdict(e) for e in edits],
        "spec": edits.spec(),
    }
    (directory / "svd_lens_edits.json").write_text(json.dumps(record, indent=1))
    return directory
