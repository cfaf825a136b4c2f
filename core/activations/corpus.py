"""The reference corpus: documents of varied English that directions' dataset examples
are read from.

The shipped corpus is ``data/reference_corpus.jsonl.xz`` (built by
``scripts/build_reference_corpus.py`` from registry packages; sources and licences in
``data/SOURCES.md``): one JSON object per line, ``{"id", "source", "split", "text"}``,
``split`` being ``train`` or ``heldout`` (a deterministic hash split, so a user can check
that a direction's examples generalise to text they were not picked from).
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import SpecError

DATA_DIR = Path(__file__).resolve().parent / "data"
#: The corpus shipped with the repository.
DEFAULT_CORPUS = DATA_DIR / "reference_corpus.jsonl.xz"
SPLITS: tuple[str, ...] = ("train", "heldout")


@dataclass(frozen=True)
class Document:
    """One document of the corpus.

    Attributes:
        id: its id, unique in the corpus (what examples refer to).
        source: where it came from (``fortunes``, ``gcide``, ...; see ``SOURCES.md``).
        split: ``train`` or ``heldout``.
        text: the text.
    """

    id: int
    source: str
    split: str
    text: str


@dataclass(frozen=True)
class Corpus:
    """An ordered set of documents and the hash that names its content.

    Attributes:
        documents: the documents, in the order a build reads them.
        digest: SHA-256 of the content (ids, splits and texts); a cache entry built from
            another digest is stale.
        name: where it was read from (for messages).
    """

    documents: tuple[Document, ...]
    digest: str
    name: str = "corpus"

    @classmethod
    def of(cls, docs: Sequence[Document], name: str = "corpus") -> Corpus:
        """A corpus of ``docs``, hashed here (tests build small ones in memory)."""
        h = hashlib.sha256()
        for d in docs:
            h.update(json.dumps([d.id, d.split, d.text]).encode())
            h.update(b"\n")
        return cls(tuple(docs), h.hexdigest(), name)

    def split(self, split: str) -> Iterator[Document]:
        """The documents of one split, in order."""
        if split not in SPLITS:
            raise SpecError(f"split must be one of {', '.join(SPLITS)}, not {split!r}.")
        return (d for d in self.documents if d.split == split)

    def by_id(self) -> dict[int, Document]:
        """Documents by id."""
        return {d.id: d for d in self.documents}


def _parse(lines: Iterator[str], name: str) -> Corpus:
    docs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row: Any = json.loads(line)
            docs.append(
                Document(int(row["id"]), str(row["source"]), str(row["split"]), str(row["text"]))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(
                f"Line {n} of the corpus {name} is not a document ({exc}); rebuild it with "
                "scripts/build_reference_corpus.py."
            ) from exc
    return Corpus.of(docs, name)


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int) -> Corpus:
    del mtime_ns  # part of the memo key: a rewritten file is read again
    p = Path(path)
    try:
        if p.suffix == ".xz":
            with lzma.open(p, "rt", encoding="utf-8") as f:
                return _parse(iter(f.read().splitlines()), p.name)
        return _parse(iter(p.read_text(encoding="utf-8").splitlines()), p.name)
    except (OSError, lzma.LZMAError) as exc:
        raise SpecError(
            f"The corpus {p} cannot be read ({exc}); give a .jsonl or .jsonl.xz file of "
            "documents, or rebuild the default with scripts/build_reference_corpus.py."
        ) from exc


def load_corpus(path: Path | str | None = None) -> Corpus:
    """The corpus at ``path`` (``.jsonl`` or ``.jsonl.xz``), the shipped one by default.
    Read once per file version.

    Raises:
        SpecError: the file is missing or malformed.
    """
    p = Path(path) if path is not None else DEFAULT_CORPUS
    if not p.is_file():
        raise SpecError(
            f"No corpus file at {p}; give an existing .jsonl(.xz) file, or rebuild the "
            "default with scripts/build_reference_corpus.py."
        )
    return _read(str(p.resolve()), p.stat().st_mtime_ns)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens: the one way both the build and the
    display tokenize a document, so positions agree.
    """
    return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]
