"""The concept list the offline labeller names directions from.

``core/data/concepts.txt`` holds a few thousand broad English concepts, one per line:
WordNet noun synsets that head a sizeable subtree (at least ``min_hyponyms`` hyponyms,
at depth 3 to 10 below ``entity``) plus a short hand-written list of the categories
token sets in language models often fall into (numbers, names, code, affixes) that
WordNet lacks. :func:`build_concepts` regenerates it from a WordNet 3.0 ``dict``
directory (Debian ``wordnet-base``: ``/usr/share/wordnet``); at run time only the
committed text file is read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

CONCEPTS_FILE = Path(__file__).resolve().parent / "data" / "concepts.txt"

_TAXON = re.compile(
    r"\b(genus|family|order|class|subclass|phylum|suborder|subfamily|superfamily)$|dicot|monocot|\bid(ae|a)\b"
)

#: Categories that matter for token sets but are not WordNet noun subtrees.
EXTRA_CONCEPTS: tuple[str, ...] = (
    "numbers",
    "years",
    "dates",
    "months",
    "days of the week",
    "times of day",
    "first names",
    "surnames",
    "people's names",
    "place names",
    "countries",
    "cities",
    "US states",
    "nationalities",
    "languages",
    "companies",
    "brands",
    "sports teams",
    "computer code",
    "programming",
    "source code identifiers",
    "HTML",
    "URLs",
    "file names",
    "software",
    "video games",
    "websites",
    "social media",
    "the internet",
    "suffixes",
    "prefixes",
    "word fragments",
    "abbreviations",
    "acronyms",
    "punctuation",
    "pronouns",
    "prepositions",
    "conjunctions",
    "adverbs",
    "adjectives",
    "verbs",
    "nouns",
    "plural nouns",
    "past tense verbs",
    "negative words",
    "positive words",
    "emotions",
    "colors",
    "sizes",
    "quantities",
    "politics",
    "elections",
    "government",
    "law",
    "crime",
    "police",
    "military",
    "war",
    "weapons",
    "religion",
    "science",
    "medicine",
    "health",
    "disease",
    "the body",
    "food",
    "drinks",
    "cooking",
    "animals",
    "plants",
    "weather",
    "nature",
    "music",
    "film",
    "television",
    "books",
    "news",
    "journalism",
    "sports",
    "football",
    "basketball",
    "soccer",
    "finance",
    "money",
    "business",
    "economics",
    "education",
    "schools",
    "technology",
    "computers",
    "cars",
    "transport",
    "travel",
    "family",
    "relationships",
    "sex",
    "clothing",
    "fashion",
    "housing",
    "buildings",
    "furniture",
    "tools",
    "materials",
    "chemistry",
    "physics",
    "mathematics",
    "astronomy",
    "space",
    "history",
    "geography",
    "fantasy",
    "mythology",
    "magic",
    "Japanese words",
    "Chinese words",
    "Spanish words",
    "French words",
    "German words",
    "Russian words",
    "foreign words",
    "slang",
    "profanity",
    "insults",
)


def _parse_nouns(data_noun: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    names: dict[str, str] = {}
    hypernyms: dict[str, list[str]] = defaultdict(list)
    for line in data_noun.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue  # licence header
        fields = line.split(" | ", 1)[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        names[offset] = fields[4].replace("_", " ")
        i = 4 + 2 * n_words
        n_ptr = int(fields[i])
        i += 1
        for _ in range(n_ptr):
            symbol, target, pos = fields[i], fields[i + 1], fields[i + 2]
            i += 4
            if symbol in ("@", "@i") and pos == "n":
                hypernyms[offset].append(target)
    return names, hypernyms


def build_concepts(
    wordnet_dir: Path, min_hyponyms: int = 10, min_depth: int = 3, max_depth: int = 10
) -> list[str]:
    """Broad concepts from a WordNet 3.0 ``dict`` directory, plus :data:`EXTRA_CONCEPTS`."""
    names, hypernyms = _parse_nouns(Path(wordnet_dir) / "data.noun")
    children: dict[str, list[str]] = defaultdict(list)
    for child, parents in hypernyms.items():
        for p in parents:
            children[p].append(child)

    def n_below(offset: str) -> int:
        seen: set[str] = set()
        stack = [offset]
        while stack:
            for c in children[stack.pop()]:
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return len(seen)

    depth: dict[str, int] = {}

    def depth_of(offset: str) -> int:
        # iterative: WordNet's noun hierarchy is ~20 deep, but avoid recursion limits anyway
        path = [offset]
        while path:
            o = path[-1]
            pending = [h for h in hypernyms.get(o, []) if h not in depth]
            if pending:
                path.extend(pending)
                continue
            path.pop()
            hs = hypernyms.get(o, [])
            depth[o] = 0 if not hs else 1 + min(depth[h] for h in hs)
        return depth[offset]

    out: dict[str, None] = {}
    for offset, name in names.items():
        if _TAXON.search(name):
            continue  # Linnaean ranks name no theme a token set shares
        if min_depth <= depth_of(offset) <= max_depth and n_below(offset) >= min_hyponyms:
            out.setdefault(name.lower() if not name[:1].isupper() else name, None)
    for extra in EXTRA_CONCEPTS:
        out.setdefault(extra, None)
    return list(out)


def write_concepts(wordnet_dir: Path, path: Path = CONCEPTS_FILE) -> int:
    """Regenerate the concept file; returns the number of concepts written."""
    concepts = build_concepts(wordnet_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(concepts) + "\n", encoding="utf-8")
    return len(concepts)


@lru_cache(maxsize=4)
def load_concepts(path: Path = CONCEPTS_FILE) -> tuple[str, ...]:
    """The concepts in ``path`` (one per line; blank lines and ``#`` comments skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(s.strip() for s in lines if s.strip() and not s.startswith("#"))


if __name__ == "__main__":  # python -m core.label.concepts /usr/share/wordnet
    import sys

    print(write_concepts(Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet")))  # noqa: T201 (a maintainer's one-off script entry)
