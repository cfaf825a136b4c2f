"""Every side's activations against a plain Hugging Face forward pass with hooks and a
dense SVD of the same matrix read from the checkpoint, and the top/bottom N against the
brute-force ends of those values."""

from __future__ import annotations

import pytest
import torch

from core.activations.examples import ExampleOptions, build_examples
from tests.core import reference as ref
from tests.core.activations.conftest import small_corpus
from tests.tiny_models import ARCHS


def _qk(model, layer: int, head: int) -> torch.Tensor:
    """Dense W_Q W_K^T of one head, read from the stored modules."""
    cfg = model.config
    d, nh = cfg.hidden_size, cfg.num_attention_heads
    dh = d // nh
    arch = ref.family_of(model).name
    if arch == "gpt2":
        W = ref.xw(ref.module(model, "qkv", layer))
        Wq, Wk = W[:, head * dh : (head + 1) * dh], W[:, d + head * dh : d + (head + 1) * dh]
    elif arch == "neox":
        W = ref.module(model, "qkv", layer).weight.reshape(nh, 3, dh, d)
        Wq, Wk = W[head, 0].T, W[head, 1].T
    else:
        attn = model.model.layers[layer].self_attn
        g = head // (nh // cfg.num_key_value_heads)
        Wq = attn.q_proj.weight.T[:, head * dh : (head + 1) * dh]
        Wk = attn.k_proj.weight.T[:, g * dh : (g + 1) * dh]
    return (Wq @ Wk.T).detach().double()


def _bare(x: torch.Tensor, centre: bool, eps: float) -> torch.Tensor:
    x = x.double()
    if centre:
        x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _oriented(W: torch.Tensor, W_U: torch.Tensor, token_side: str, i: int):
    """The first direction from ``i`` on whose singular value is 2% away from its
    neighbours (a near-degenerate pair's vectors are defined only to float32's precision
    over the gap), and its read and write vectors of dense ``W``, flipped together so the
    token side's largest-magnitude projection on ``W_U`` is positive."""
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    gaps = (S[:-1] - S[1:]) / S[:-1]
    while (i > 0 and gaps[i - 1] < 0.02) or (i < len(gaps) and gaps[i] < 0.02):
        i += 1
    u, v = U[:, i], Vh[i]
    proj = (u if token_side == "in" else v) @ W_U
    s = -1.0 if proj.max() < -proj.min() else 1.0
    return i, s * u, s * v


def _reference(ckpt, corpus, processing: str):
    """Per document, per layer: the hooked inputs and outputs (BOS position dropped)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    tok = AutoTokenizer.from_pretrained(ckpt)
    L = (
        model.config.num_hidden_layers
        if hasattr(model.config, "num_hidden_layers")
        else model.config.n_layer
    )
    centre = ref.centres(model)
    got: dict[tuple[str, int], torch.Tensor] = {}
    handles = []

    def save(name, layer, use_input=False, bare=False):
        def hook(mod, args, out=None):
            x = args[0] if use_input else out
            if bare:
                eps = getattr(mod, "eps", None) or mod.variance_epsilon
                x = _bare(x, centre, eps)
            got[name, layer] = x[0, 1:].detach().double()

        return hook

    for layer in range(L):
        post = processing == "post"
        handles += [
            ref.module(model, "ln1", layer).register_forward_hook(save("a", layer, post, post)),
            ref.module(model, "ln2", layer).register_forward_hook(save("m", layer, post, post)),
            ref.module(model, "attn_out", layer).register_forward_pre_hook(save("z", layer, True)),
            ref.module(model, "mlp_out", layer).register_forward_hook(save("o", layer)),
        ]
    per_doc = {}
    with torch.no_grad():
        for doc in corpus.split("train"):
            ids = [tok.bos_token_id] + tok(doc.text, add_special_tokens=False)["input_ids"]
            got.clear()
            model(torch.tensor([ids]))
            per_doc[doc.id] = dict(got)
    for h in handles:
        h.remove()
    return model, per_doc, L


def _cases(arch: str, processing: str):
    kinds = ["ov.read", "ov.write", "qk.query", "qk.key", "mlp_in.read", "mlp_out.write"]
    if arch == "llama":
        kinds.append("mlp_gate.read")
    if processing == "post":  # the fold matters on the reading sides
        kinds = ["ov.read", "mlp_in.read"]
    return [
        (k, layer, head, i) for k in kinds for layer in (0, 1) for head in (1, 3) for i in (0, 2)
    ]


@pytest.mark.parametrize(
    ("arch", "processing"), [(a, "raw") for a in ARCHS] + [("gpt2", "post"), ("llama", "post")]
)
def test_activations_match_hooked_forward_pass(analyses, checkpoints, arch, processing):
    a = analyses(arch, processing)
    corpus = small_corpus()
    n_tok = 200
    built = build_examples(a, corpus, ExampleOptions(tokens=n_tok, n=n_tok, batch_tokens=256))
    model, per_doc, _ = _reference(checkpoints[arch], corpus, processing)
    total = sum(len(v["a", 0]) for v in per_doc.values())
    assert built.n_tokens == total
    W_U = ref.unembed(model)
    if processing == "post":  # the sign rule reads the folded unembedding
        W_U = ref.fold(W_U, ref.final_norm(model).weight.detach().double(), ref.centres(model))
    W_U = ref.unembed_as_read(W_U, a.settings.projection)  # and through the projection
    for name, layer, head, i in _cases(arch, processing):
        kind, side = name.split(".")
        head = head if kind in ("ov", "qk") else None
        if kind == "qk":
            W, tside = _qk(model, layer, head), "out"
            if processing == "post":
                W = ref.fold(W, ref.norm_weight(model, layer, 1), ref.centres(model))
        else:
            W = ref.component(model, kind, layer, head, processing)
            tside = "in" if kind in ("mlp_in", "mlp_gate") else "out"
        i, u, v = _oriented(W, W_U, tside, i)
        want: dict[tuple[int, int], float] = {}
        for doc, t in per_doc.items():
            if name in ("ov.read", "qk.query"):
                vals = t["a", layer] @ u
            elif name == "qk.key":
                vals = t["a", layer] @ v
            elif name in ("mlp_in.read", "mlp_gate.read"):
                vals = t["m", layer] @ u
            elif name == "ov.write":
                dh = model.config.hidden_size // model.config.num_attention_heads
                zh = t["z", layer][:, head * dh : (head + 1) * dh]
                vals = zh @ ref.out_matrix(model, layer, head).detach().double() @ v
            else:
                vals = t["o", layer] @ v
            for p, x in enumerate(vals.tolist()):
                want[doc, p] = x
        e = built.sides[name]
        row = e.row(layer, head, i)
        got = {
            (int(d), int(p)): float(x)
            for d, p, x in zip(e.top_doc[row], e.top_pos[row], e.top_val[row])
        }
        assert got.keys() == want.keys(), name
        for key, x in want.items():
            assert abs(got[key] - x) < 1e-4, (name, layer, head, i, key, got[key], x)
        # Exact mean and standard deviation over every token.
        w = torch.tensor(list(want.values()), dtype=torch.float64)
        assert abs(float(e.mean[row]) - float(w.mean())) < 1e-4
        assert abs(float(e.std[row]) - float(w.std(unbiased=False))) < 1e-4
        assert int(e.hist[row].sum()) == len(want)


def test_top_and_bottom_n_are_the_true_ends(analyses):
    """Small batches, so the ends are merged across many of them."""
    a = analyses("gpt2", "raw")
    corpus = small_corpus()
    everything = build_examples(
        a, corpus, ExampleOptions(tokens=500, n=500, batch_tokens=40, context=20)
    )
    few = build_examples(a, corpus, ExampleOptions(tokens=500, n=4, batch_tokens=40, context=20))
    for name, e in few.sides.items():
        full = everything.sides[name]
        for row in range(0, e.top_val.shape[0], 7):
            vals = full.top_val[row]  # every token, descending
            assert torch.allclose(e.top_val[row], vals[:4], atol=1e-5), name
            assert torch.allclose(e.bottom_val[row], vals.flip(0)[:4], atol=1e-5), name
            # Ties (the same token opening two windows) may pick either token: each
            # example must hold the value its token really has.
            value = {
                (int(d), int(p)): float(x)
                for d, p, x in zip(full.top_doc[row], full.top_pos[row], full.top_val[row])
            }
            for d, p, x in [
                *zip(e.top_doc[row], e.top_pos[row], e.top_val[row]),
                *zip(e.bottom_doc[row], e.bottom_pos[row], e.bottom_val[row]),
            ]:
                assert abs(value[int(d), int(p)] - float(x)) < 1e-5, name
