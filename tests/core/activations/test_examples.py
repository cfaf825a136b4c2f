"""A planted model: its MLP-in direction 0 reads one token's embedding, so that token's
occurrences are its top examples."""

from __future__ import annotations

import torch

from core.activations.examples import ExampleOptions, build_examples
from core.activations.view import direction_examples
from core.analysis import open_analysis
from core.settings import Settings
from tests.core.activations.conftest import small_corpus
from tests.tiny_models import make_hf_model, make_tokenizer


def test_planted_direction_fires_on_its_token(tmp_path):
    tok = make_tokenizer()
    corpus = small_corpus()
    ids = {d.id: tok(d.text, add_special_tokens=False)["input_ids"] for d in corpus.split("train")}
    target = ids[0][1]  # " fire": in two of the five documents
    where = {(d, p) for d, t in ids.items() for p, x in enumerate(t) if x == target}
    assert 1 < len(where) < sum(len(t) for t in ids.values()) // 4

    model = make_hf_model("gpt2")
    h0 = model.transformer.h[0]
    with torch.no_grad():
        # Layer 0's MLP then reads ln_2(W_E[token]) alone: no position embedding, no
        # attention output, a plain LayerNorm.
        model.transformer.wpe.weight.zero_()
        h0.attn.c_proj.weight.zero_()
        h0.attn.c_proj.bias.zero_()
        h0.ln_2.weight.fill_(1.0)
        h0.ln_2.bias.zero_()
        e = model.transformer.wte.weight[target]
        n = (e - e.mean()) / (e - e.mean()).norm()
        r = torch.randn(h0.mlp.c_fc.weight.shape[1])
        h0.mlp.c_fc.weight.mul_(0.01).add_(10.0 * torch.outer(n, r / r.norm()))
    model.save_pretrained(tmp_path / "planted")
    tok.save_pretrained(tmp_path / "planted")
    a = open_analysis(
        Settings(
            model=str(tmp_path / "planted"),
            processing="raw",
            device="cpu",
            cache_dir=tmp_path / "c",
        )
    )
    built = build_examples(a, corpus, ExampleOptions(tokens=500, n=len(where)))
    e = built.sides["mlp_in.read"]
    row = e.row(0, None, 0)
    top = {(int(d), int(p)) for d, p in zip(e.top_doc[row], e.top_pos[row])}
    assert top == where
    # The strongest non-target token is far below every occurrence of the target.
    assert float(e.bottom_val[row].abs().max()) < 0.5 * float(e.top_val[row, -1])
    # Its contexts mark that token.
    view = direction_examples(built, corpus, a.tokenizer, a.tokens.raw, "mlp_in", 0, None, 0, n=2)
    assert all(ex.tokens[ex.at] == a.tokens.raw[target] for ex in view.top)
    assert f"[[{a.tokens.raw[target]}]]" in view.top[0].to_json()["context"]
    assert 0 < view.strong < 0.5
