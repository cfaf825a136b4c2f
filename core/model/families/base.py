"""What the code knows about one architecture family, as data (see the family modules)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import SpecError


@dataclass(frozen=True)
class Family:
    """One architecture family: its Hugging Face names and where its weights live.

    Attributes:
        name: the family's short name (its module's name), e.g. ``neox``.
        title: how messages name it, e.g. ``GPT-NeoX/Pythia``.
        model_types: the ``config.model_type`` values it covers.
        config_class: the ``transformers`` config class that builds one.
        model_class: the ``transformers`` causal-LM class.
        config_keys: generic shape name (``n_layers``, ``d_model``, ``n_heads``,
            ``n_kv_heads``, ``d_mlp``, ``n_ctx``, ``d_vocab``) -> the config's attribute.
        block: the module path of layer ``{}``, e.g. ``transformer.h.{}``.
        modules: role -> module path inside a block. Roles: ``ln1``, ``ln2`` (the norms
            before attention and MLP); ``attn_out``, ``mlp_in``, ``mlp_gate``, ``mlp_out``
            (the stored matrices edits change); the value projection as the family
            stores it (``qkv`` fused, or ``v``).
        transposed: whether a module's ``weight`` is ``W^T`` for the ``x @ W`` matrix
            (``nn.Linear``, ``[d_out, d_in]``) rather than ``W`` itself (GPT-2's Conv1D).
        final_norm: module path of the norm before the unembedding.
        embed: module path of the token embedding.
        unembed: module path of the unembedding (absent from the files when tied to the
            embedding).
        qkv_layout: how a fused query/key/value weight is laid out: ``concat`` (GPT-2:
            columns ``[Q | K | V]``), ``per_head`` (NeoX: rows ``[head, (q, k, v),
            d_head]``), or ``separate`` (roles ``q``, ``k``, ``v``, one module each).
        normalization: ``LN`` or ``RMS``, as :class:`core.model.weights.ModelMeta` names it.
        position_embed: module path of learned position embeddings the model adds to its
            input embeddings (GPT-2's ``wpe``); empty when positions are rotary.
    """

    name: str
    title: str
    model_types: tuple[str, ...]
    config_class: str
    model_class: str
    config_keys: Mapping[str, str]
    block: str
    modules: Mapping[str, str]
    transposed: bool
    final_norm: str
    embed: str
    unembed: str
    qkv_layout: str
    normalization: str
    position_embed: str = ""

    @property
    def layers(self) -> str:
        """The module path of the list of blocks, e.g. ``transformer.h``."""
        return self.block.rsplit(".", 1)[0]

    def path(self, role: str, layer: int) -> str:
        """The full module path of ``role`` in ``layer`` (``KeyError`` if it has none)."""
        return f"{self.block.format(layer)}.{self.modules[role]}"

    def module(self, model: Any, role: str, layer: int) -> Any:
        """The module of ``role`` in ``layer`` of a plain Hugging Face ``model``."""
        try:
            return model.get_submodule(self.path(role, layer))
        except (KeyError, AttributeError):
            raise SpecError(
                f"A {self.title} model has no {role} module in layer {layer}; "
                f"{role} cannot be read or edited in this model."
            ) from None

    def n_ctx(self, config: Any) -> int:
        """The context length a ``config`` of this family allows."""
        return int(getattr(config, self.config_keys["n_ctx"]))
