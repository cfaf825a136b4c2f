"""Prompts of the LLM labeller and verifier, and parsing of their answers.

After the structure the original post found to work (the wording here is our own): a
word-list aptitude-test framing, mostly negative few-shot examples, answers of the form
"most of these words are ..." or "these words have no shared semantic meaning"; then a
separate verifier that answers yes or no to the labeller's claim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NO_THEME = "these words have no shared semantic meaning"

_LABEL_INTRO = (
    "This is a vocabulary aptitude test. Each question shows a list of words, many of them "
    "fragments of longer words. If most of the words share one meaning or topic, answer "
    '"most of these words are" followed by that meaning. If they do not, answer "'
    + NO_THEME
    + '". Most lists have no shared meaning; answer in one short sentence.'
)
_LABEL_SHOTS: tuple[tuple[str, str], ...] = (
    ("ership, ouch, Sov, anth, ivic, 229, rane, ';, oglu, Jr, ailing, eeks, ulum, pheus, osp",
     NO_THEME + "."),
    ("tuna, salmon, trout, cod, bass, herring, mackerel, haddock, tilapia, sardine, pike, "
     "perch, anchovy, halibut, carp", "most of these words are kinds of fish."),
    ("whichever, Bren, iox, enity, ascus, REL, unt, 36, portion, oka, ocl, Rocky, Coll, "
     "idences, reens", NO_THEME + "."),
    ("Nope, strap, ayer, uddled, Kem, dsl, orp, Ox, aple, ourke, ellar, Stamp, iltr, ebin, "
     "apons", NO_THEME + "."),
    ("senator, parliament, legislation, ballot, congressional, vote, Senate, lawmakers, "
     "elect, ive, policy, ministers, caucus, bill, ugh", "most of these words are about politics."),
    ("ATED, iny, maker, ester, obe, onial, Dian, Pet, gie, urt, ERY, okes, Spe, iph, dain",
     NO_THEME + "."),
)  # fmt: skip

_VERIFY_INTRO = (
    "You check answers to a vocabulary aptitude test. You see a list of words and a claim "
    "about what most of them share. Reply yes if the claim is true of most of the words, "
    "and no if it is vague, true of only a few, or only about spelling. Reply with one word."
)
_VERIFY_SHOTS: tuple[tuple[str, str, str], ...] = (
    ("tuna, salmon, trout, cod, bass, herring, ized, haddock, tilapia, sardine, pike, perch, "
     "anchovy, ism, carp", "most of these words are kinds of fish.", "yes"),
    ("ership, ouch, Sov, anth, ivic, ailing, eeks, ulum, pheus, osp, Jr, 229, rane, ';, oglu",
     "most of these words are suffixes.", "no"),
    ("Bren, iox, enity, ascus, REL, unt, 36, portion, oka, Rocky, Coll, idences, reens, ocl, "
     "Ox", "most of these words are about rocks.", "no"),
    ("Monday, Tuesday, Friday, weekend, Sunday, Thursday, week, Wednesday, Saturday, ogg, "
     "day, tomorrow, night, Fri, Mon", "most of these words are days of the week.", "yes"),
)  # fmt: skip


def label_messages(tokens: Sequence[str]) -> list[dict[str, str]]:
    """The labelling conversation for one token set."""
    msgs = [{"role": "system", "content": _LABEL_INTRO}]
    for words, answer in _LABEL_SHOTS:
        msgs += [{"role": "user", "content": f"Words: {words}"},
                 {"role": "assistant", "content": answer}]  # fmt: skip
    msgs.append({"role": "user", "content": "Words: " + ", ".join(tokens)})
    return msgs


def verify_messages(tokens: Sequence[str], claim: str) -> list[dict[str, str]]:
    """The verifier conversation for one token set and the labeller's claim."""
    msgs = [{"role": "system", "content": _VERIFY_INTRO}]
    for words, c, answer in _VERIFY_SHOTS:
        msgs += [{"role": "user", "content": f"Words: {words}\nClaim: {c}"},
                 {"role": "assistant", "content": answer}]  # fmt: skip
    msgs.append({"role": "user", "content": "Words: " + ", ".join(tokens) + f"\nClaim: {claim}"})
    return msgs


_THEME = re.compile(r"most of these words (?:are|have to do with|relate to|refer to)\s+(.*)", re.I)


def parse_theme(response: str) -> str | None:
    """The theme a label response names, or ``None`` for "no shared meaning"."""
    text = response.strip().strip('"').strip()
    if not text or "no shared" in text.lower():
        return None
    m = _THEME.search(text)
    theme = (m.group(1) if m else text).strip().rstrip(".").strip()
    return theme or None


def parse_yes(response: str) -> bool:
    """Whether a verifier response is a yes."""
    return response.strip().lower().lstrip("\"'").startswith("yes")
