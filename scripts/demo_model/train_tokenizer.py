#!/usr/bin/env python
"""Train the byte-level BPE tokenizer (vocab 8192) for the embedded demo GPT-2.

Reproduce the whole demo model (corpus -> tokenizer -> weights) with:

    apt-get update && apt-get install -y dict-gcide wordnet-base fortunes
    .venv/bin/python scripts/demo_model/build_corpus.py \
        && .venv/bin/python scripts/demo_model/train_tokenizer.py \
        && .venv/bin/python scripts/demo_model/train.py --preset cpu --minutes 60

Reads the training splits ``<workdir>/*.train.txt`` written by build_corpus.py
(default /tmp/demo_corpus) and writes a Hugging Face fast tokenizer
(tokenizer.json + tokenizer_config.json + special_tokens_map.json) to
``<workdir>/tokenizer`` by default; train.py copies it into models/demo-gpt2.

GPT-2 conventions: ByteLevel pre-tokenizer without a prefix space, the single
special token ``<|endoftext|>`` (id 0) used as bos / eos / unk / pad, no
post-processor (nothing is added automatically around encoded text).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"


def iter_docs(files, max_chars_per_file=None):
    for path in files:
        n = 0
        with open(path, encoding="utf-8") as f:
            buf = []
            for line in f:
                if line.strip():
                    buf.append(line)
                    continue
                if buf:
                    doc = "".join(buf).rstrip("\n")
                    buf = []
                    n += len(doc)
                    yield doc
                    if max_chars_per_file and n >= max_chars_per_file:
                        break
            if buf:
                yield "".join(buf).rstrip("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/tmp/demo_corpus")
    ap.add_argument("--out", default=None, help="output dir (default <workdir>/tokenizer)")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--min-frequency", type=int, default=2)
    args = ap.parse_args(argv)

    files = sorted(glob.glob(os.path.join(args.workdir, "*.train.txt")))
    if not files:
        sys.exit(f"error: no *.train.txt files in {args.workdir}; run build_corpus.py first.")
    out = Path(args.out or os.path.join(args.workdir, "tokenizer"))
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(iter_docs(files), trainer=trainer)
    assert tok.token_to_id(EOT) == 0, "expected <|endoftext|> to be id 0"

    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(out))
    sample = "The quick brown fox jumps over the lazy dog. To be, or not to be."
    ids = fast(sample)["input_ids"]
    print(f"vocab {fast.vocab_size} (len {len(fast)}) saved to {out}")
    print(f"{len(sample)} chars -> {len(ids)} tokens: {fast.convert_ids_to_tokens(ids)}")
    assert fast.decode(ids) == sample


if __name__ == "__main__":
    main()
