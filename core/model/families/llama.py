"""Llama-style: nn.Linear layers; separate Q/K/V with grouped-query attention; RMSNorm;
gated MLP. Mistral and Qwen2 keep Llama's module names, so they share this layout.
"""

from core.model.families.base import Family

FAMILY = Family(
    name="llama",
    title="Llama-style",
    model_types=("llama", "mistral", "qwen2"),
    config_class="LlamaConfig",
    model_class="LlamaForCausalLM",
    config_keys={
        "n_layers": "num_hidden_layers",
        "d_model": "hidden_size",
        "n_heads": "num_attention_heads",
        "n_kv_heads": "num_key_value_heads",
        "d_mlp": "intermediate_size",
        "n_ctx": "max_position_embeddings",
        "d_vocab": "vocab_size",
    },
    block="model.layers.{}",
    modules={
        "ln1": "input_layernorm",
        "ln2": "post_attention_layernorm",
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",  # one block of d_head rows per key/value head
        "attn_out": "self_attn.o_proj",
        "mlp_in": "mlp.up_proj",
        "mlp_gate": "mlp.gate_proj",
        "mlp_out": "mlp.down_proj",
    },
    transposed=True,
    final_norm="model.norm",
    embed="model.embed_tokens",
    unembed="lm_head",
    qkv_layout="separate",
    normalization="RMS",
)
