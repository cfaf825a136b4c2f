"""GPT-NeoX / Pythia: nn.Linear layers; QKV fused per head; LayerNorm; parallel residual."""

from core.model.families.base import Family

FAMILY = Family(
    name="neox",
    title="GPT-NeoX/Pythia",
    model_types=("gpt_neox",),
    config_class="GPTNeoXConfig",
    model_class="GPTNeoXForCausalLM",
    config_keys={
        "n_layers": "num_hidden_layers",
        "d_model": "hidden_size",
        "n_heads": "num_attention_heads",
        "d_mlp": "intermediate_size",
        "n_ctx": "max_position_embeddings",
        "d_vocab": "vocab_size",
    },
    block="gpt_neox.layers.{}",
    modules={
        "ln1": "input_layernorm",
        "ln2": "post_attention_layernorm",
        "qkv": "attention.query_key_value",  # rows grouped by head: [head, (q, k, v), d_head]
        "attn_out": "attention.dense",
        "mlp_in": "mlp.dense_h_to_4h",
        "mlp_out": "mlp.dense_4h_to_h",
    },
    transposed=True,
    final_norm="gpt_neox.final_layer_norm",
    embed="gpt_neox.embed_in",
    unembed="embed_out",
    qkv_layout="per_head",
    normalization="LN",
)
