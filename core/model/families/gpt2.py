"""GPT-2: Conv1D layers store ``x @ W`` as is; one fused QKV projection; LayerNorm."""

from core.model.families.base import Family

FAMILY = Family(
    name="gpt2",
    title="GPT-2",
    model_types=("gpt2",),
    config_class="GPT2Config",
    model_class="GPT2LMHeadModel",
    config_keys={
        "n_layers": "n_layer",
        "d_model": "n_embd",
        "n_heads": "n_head",
        "d_mlp": "n_inner",
        "n_ctx": "n_positions",
        "d_vocab": "vocab_size",
    },
    block="transformer.h.{}",
    modules={
        "ln1": "ln_1",
        "ln2": "ln_2",
        "qkv": "attn.c_attn",  # [d_model, 3 * d_model]: Q, K, V side by side
        "attn_out": "attn.c_proj",
        "mlp_in": "mlp.c_fc",
        "mlp_out": "mlp.c_proj",
    },
    transposed=False,
    final_norm="transformer.ln_f",
    embed="transformer.wte",
    unembed="lm_head",
    qkv_layout="concat",
    normalization="LN",
    position_embed="transformer.wpe",
)
