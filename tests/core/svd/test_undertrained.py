"""Planted under-trained tokens: a tiny GPT-2 trained here on text that never uses some
of its tokenizer's tokens; the detector must find them from the weights alone."""

from __future__ import annotations

import pytest
import torch

from core.svd.undertrained import detect, reference_tokens, undertrained_tokens
from tests.tiny_models import TEXT, make_tokenizer

RESERVED = [f"<reserved_{i}>" for i in range(8)]
#: Words of the tokenizer's corpus that the model never sees.
DROPPED = ("king queen prince castle war army", "red blue yellow green colours paint the house")


@pytest.fixture(scope="module")
def planted() -> tuple[object, torch.Tensor, set[int]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = make_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": RESERVED})
    corpus = TEXT
    for words in DROPPED:
        corpus = corpus.replace(words, "")
    ids = torch.tensor(tok(corpus * 30, add_special_tokens=False)["input_ids"])
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=64, n_layer=2, n_head=4)
    model = GPT2LMHeadModel(cfg)
    # Tiny matrices: threads only contend (two threads on a shared machine ran 60x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        start = torch.randint(0, len(ids) - 33, (16,), generator=g)
        batch = torch.stack([ids[s : s + 32] for s in start.tolist()])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    assert loss.item() < 2.0  # it did learn the text
    W_U = model.lm_head.weight.detach().T.clone()  # tied with the embedding
    return tok, W_U, set(ids.tolist())


def test_reference_set_is_the_special_and_reserved_tokens(planted) -> None:
    tok, W_U, _ = planted
    ref = reference_tokens(tok, W_U.shape[1])
    want = {tok.convert_tokens_to_ids(t) for t in [*RESERVED, "<|endoftext|>"]}
    # Byte-level BPE reaches every ordinary token, so only the added ones are unreachable.
    assert set(ref.nonzero().squeeze(1).tolist()) == want


def test_detector_finds_the_planted_tokens(planted) -> None:
    tok, W_U, seen = planted
    found = undertrained_tokens(tok, W_U)
    assert found is not None
    ref = found.reference
    V = W_U.shape[1]
    never = torch.tensor([i not in seen for i in range(V)]) & ~ref
    trained = torch.tensor([i in seen for i in range(V)])
    assert int(never.sum()) >= 20  # the planted set: tokens the training text never used
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
