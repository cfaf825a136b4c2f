"""Planted under-trained tokens: a tiny GPT-2 trained here on text that never uses some
of its tokenizer's tokens; the detector must find them from the weights alone."""

from __future__ import annotations

import pytest
import torch

from core.svd.undertrained import detect, reference_tokens, undertrained_tokens

RESERVED = [f"<reserved_{i}>" for i in range(8)]
N_WORDS, N_PLANTED = 240, 24


def _word_tokenizer() -> object:
    """A word-level tokenizer over ``w0 .. w239`` plus an unknown and reserved tokens:
    every word is one token that plain text reaches, so only the specials are
    unreachable (as in a real vocabulary, where the trained tokens are the many)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, **{f"w{i}": i + 1 for i in range(N_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    out.add_special_tokens({"additional_special_tokens": RESERVED})
    return out


@pytest.fixture(scope="module")
def planted() -> tuple[object, torch.Tensor, set[int]]:
    """A tiny GPT-2 trained on random walks over a sparse bigram chain that never
    visits ``N_PLANTED`` chosen words; returns the tokenizer, W_U and the ids seen."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _word_tokenizer()
    g = torch.Generator().manual_seed(0)
    words = torch.arange(1, N_WORDS + 1)
    used = words[torch.randperm(N_WORDS, generator=g)[N_PLANTED:]]
    succ = used[torch.randint(0, len(used), (N_WORDS + 1, 4), generator=g)]
    walk = [int(used[0])]
    for _ in range(20000):
        walk.append(int(succ[walk[-1], torch.randint(0, 4, (1,), generator=g)]))
    ids = torch.tensor(walk)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=64, n_layer=2, n_head=4)
    model = GPT2LMHeadModel(cfg)
    # Tiny matrices: threads only contend (two threads on a shared machine ran 60x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(300):
        start = torch.randint(0, len(ids) - 33, (16,), generator=g)
        batch = torch.stack([ids[s : s + 32] for s in start.tolist()])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    assert loss.item() < 2.0  # it learnt the chain (uniform over 4 successors: ln 4 = 1.39)
    W_U = model.lm_head.weight.detach().T.clone()  # tied with the embedding
    return tok, W_U, set(ids.tolist())


def test_reference_set_is_the_special_and_reserved_tokens(planted) -> None:
    tok, W_U, _ = planted
    ref = reference_tokens(tok, W_U.shape[1])
    want = {tok.convert_tokens_to_ids(t) for t in [*RESERVED, "<unk>"]}
    assert set(ref.nonzero().squeeze(1).tolist()) == want


def test_detector_finds_the_planted_tokens(planted) -> None:
    tok, W_U, seen = planted
    found = undertrained_tokens(tok, W_U)
    assert found is not None
    ref = found.reference
    V = W_U.shape[1]
    never = torch.tensor([i not in seen for i in range(V)]) & ~ref
    trained = torch.tensor([i in seen for i in range(V)])
    assert int(never.sum()) == N_PLANTED  # the planted set: words the training never used
    recall = float((found.under_trained & never).sum() / never.sum())
    false_rate = float((found.under_trained & trained).sum() / trained.sum())
    print(f"planted {int(never.sum())}: recall {recall:.2f}, trained flagged {false_rate:.3f}")
    assert recall >= 0.8
    assert false_rate <= 0.05
    assert found.trained.tolist() == (~found.under_trained).tolist()


def test_detect_needs_a_reference() -> None:
    with pytest.raises(ValueError, match="reference"):
        detect(torch.randn(8, 20), torch.zeros(20, dtype=torch.bool))


def test_token_table_offers_the_trained_filter(planted) -> None:
    from core.svd.project import token_table

    tok, W_U, _ = planted
    table = token_table(tok, W_U.shape[1], W_U)
    found = undertrained_tokens(tok, W_U)
    assert found is not None and table.trained is not None
    assert table.trained.tolist() == found.trained.tolist()
    both = table.mask(["alpha", "trained"])
    assert both is not None and both.tolist() == (table.alpha & found.trained).tolist()
    # Without a reference (no W_U given) the filter keeps every token.
    plain = token_table(tok, W_U.shape[1])
    assert plain.trained is None and bool(plain.mask(["trained"]).all())
