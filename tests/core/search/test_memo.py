"""The query-word memo: the tokenizer's own ids for every word the vocabulary spells,
rebuilt when a tokenizer file changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.analysis import open_analysis
from core.model.tokenizer import file_tokenizer
from core.search import memo
from core.settings import Settings
from tests.tiny_models import save_checkpoint


@pytest.fixture()
def cache_only(tmp_path: Path):
    ckpt = save_checkpoint("gpt2", tmp_path / "gpt2", seed=3)
    s = Settings(model=str(ckpt), cache_dir=tmp_path / "cache", device="cpu")
    open_analysis(s)  # builds the entry
    return ckpt, s


def test_memo_gives_the_tokenizers_ids(cache_only) -> None:
    ckpt, s = cache_only
    a = open_analysis(s, lazy=True)
    tok = memo.memo_tokenizer(a, True)
    assert isinstance(tok, memo.MemoTokenizer)
    ref = file_tokenizer(ckpt)
    assert ref is not None
    vocab = [t.strip() for t in a.tokens.raw]
    english = memo.stripped_words(a.tokens.raw)[len(vocab) :]
    assert english, "the known English words are held too"
    words = vocab + english[:: max(1, len(english) // 300)]  # every token, 300 words
    for w in words + ["fire water", "qqzzx", "  two spaces", "Fire"]:
        for text in (w, " " + w):
            assert tok.encode(text) == ref.encode(text), text
    # Held: every token's text (one token, or a few), and words of up to MAX_IDS tokens.
    assert all(tok.memo(w) is not None for w in vocab if w)
    short = [w for w in english if len(ref.encode(" " + w)) <= memo.MAX_IDS][:50]
    assert short and all(tok.memo(" " + w) is not None for w in short)
    assert (tok.unk_token, tok.unk_token_id) == (ref.unk_token, ref.unk_token_id)


def test_memo_is_read_back_and_rebuilt_when_the_tokenizer_changes(cache_only, monkeypatch):
    ckpt, s = cache_only
    memo.memo_tokenizer(open_analysis(s, lazy=True), True)  # built and saved
    built: list[int] = []
    real = memo._encodings

    def spy(tok, texts):
        built.append(len(texts))
        return real(tok, texts)

    monkeypatch.setattr(memo, "_encodings", spy)
    memo.memo_tokenizer(open_analysis(s, lazy=True), True)
    assert built == []  # read back
    cfg = ckpt / "tokenizer_config.json"
    cfg.write_text(cfg.read_text() + "\n")  # same settings, other bytes
    open_analysis(s, lazy=True)  # a new fingerprint: loads the model once
    a = open_analysis(s, lazy=True)
    assert not a.source.loaded
    assert isinstance(memo.memo_tokenizer(a, True), memo.MemoTokenizer)
    assert built, "a changed tokenizer file rebuilds the memo"


def test_memo_knows_its_words_english_frequencies(cache_only, monkeypatch) -> None:
    """Built and read back, the memo gives each held word's english_zipf (of the stripped,
    lower-cased text), None for a text it does not hold; the null's frequency bins are the
    same with it as with wordfreq's list, which a read-back memo does not open."""
    from core.search.null import frequency_bins
    from core.svd import tokens as svd_tokens

    _, s = cache_only
    built = memo.memo_tokenizer(open_analysis(s, lazy=True), True)
    words = [w for w in memo.stripped_words(open_analysis(s, lazy=True).tokens.raw) if w]
    sample = words[:: max(1, len(words) // 400)] + ["the", "Fire", " water ", "The"]
    want = {w: svd_tokens.english_zipf(w) for w in sample}
    assert any(v > 0 for v in want.values()) and any(v == 0 for v in want.values())
    assert all(built.zipf(w) == want[w] for w in sample if built.memo(w.strip()) is not None)
    assert built.zipf("qqzzx fire") is None and built.zipf("no such word at all") is None

    # Read back: the same values without the frequency list being read.
    monkeypatch.setattr(
        svd_tokens, "_english_frequencies", lambda: pytest.fail("wordfreq's list was read")
    )
    again = memo.memo_tokenizer(open_analysis(s, lazy=True), True)
    assert isinstance(again, memo.MemoTokenizer)
    held = [w for w in sample if again.memo(w.strip()) is not None]
    assert len(held) > 100
    assert [again.zipf(w) for w in held] == [want[w] for w in held]
    concepts = [held[i : i + 3] for i in range(0, 60, 3)]
    monkeypatch.undo()
    for c in concepts:
        assert frequency_bins(c, again.zipf) == frequency_bins(c), c


def test_an_index_answers_word_frequencies_only_through_its_memo(cache_only) -> None:
    """``SearchIndex.word_zipf`` is the memo's ``zipf`` where the index's tokenizer is the
    memo, and ``None`` (read wordfreq's list) for any other tokenizer."""
    from dataclasses import replace

    from core.search.index import build_index

    _, s = cache_only
    index = build_index(open_analysis(s, lazy=True))
    assert isinstance(index.tokenizer, memo.MemoTokenizer)
    assert index.word_zipf is not None and index.word_zipf("the") == index.tokenizer.zipf("the")
    plain = replace(index, tokenizer=index.tokenizer.tokenizer)
    assert plain.word_zipf is None
