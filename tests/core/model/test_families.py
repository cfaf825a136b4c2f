"""The family files against real Hugging Face models: every module path resolves, the
transposition flag matches the module's class, config names exist; unknown types fail
with one sentence."""

from __future__ import annotations

import pytest
import torch

from core.errors import ModelLoadError, SpecError
from core.model.families import FAMILIES, family_for, family_of, supported
from tests.tiny_models import ARCHS, make_hf_model


@pytest.mark.parametrize("arch", ARCHS)
def test_every_module_path_resolves_with_its_layout(arch):
    hf = make_hf_model(arch)
    family = family_of(hf)
    assert family is FAMILIES[arch]
    for layer in range(hf.config.num_hidden_layers):
        for role in family.modules:
            mod = family.module(hf, role, layer)
            if role.startswith("ln"):
                assert mod.weight.shape == (hf.config.hidden_size,)
            else:  # nn.Linear stores [d_out, d_in], the transpose of x @ W
                assert isinstance(mod, torch.nn.Linear) == family.transposed, role
    assert hf.get_submodule(family.final_norm).weight.shape == (hf.config.hidden_size,)
    assert family.n_ctx(hf.config) == hf.config.max_position_embeddings == 64
    for generic, key in family.config_keys.items():
        assert hasattr(hf.config, key), (generic, key)
    with pytest.raises(SpecError, match="no mlp_gate module|no mlp_in module in layer 9"):
        family.module(hf, "mlp_gate" if arch != "llama" else "mlp_in", 9 if arch == "llama" else 0)


def test_model_types_map_to_one_family_each():
    seen = [t for f in FAMILIES.values() for t in f.model_types]
    assert len(seen) == len(set(seen))
    assert family_for("gpt_neox").name == "neox" and family_for("mistral").name == "llama"
    assert supported() == "GPT-2, GPT-NeoX/Pythia or Llama-style"


@pytest.mark.parametrize("error", [SpecError, ModelLoadError])
def test_unknown_model_type_is_one_sentence(error):
    with pytest.raises(error) as exc:
        family_for("opt", error)
    msg = str(exc.value)
    assert msg.startswith("No architecture family knows") and "model_type 'opt'" in msg
    assert "use a GPT-2, GPT-NeoX/Pythia or Llama-style model" in msg
    assert msg.endswith(".") and msg.count(". ") == 0
