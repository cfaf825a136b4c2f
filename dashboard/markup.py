"""User text inside Streamlit's markdown: ``st.error``, ``st.caption`` and friends render
markdown (links, images, ``:material/…:`` icons, ``:red[…]`` colours, ``$…$`` maths), so
any text a URL or a visitor supplied goes through :func:`plain` first and is shown
exactly as typed.
"""

from __future__ import annotations

import re
import string

#: CommonMark lets a backslash escape any ASCII punctuation, and an escaped character
#: starts no syntax: no link, image, emphasis, code, maths or HTML.
_PUNCTUATION = frozenset(string.punctuation)
#: U+2060 WORD JOINER: invisible, and it splits what Streamlit's renderer matches in the
#: text after the escapes are gone: bare URLs ("http://", "www."), e-mail addresses
#: ("a@b.c") and its ``:name:`` directives. (A browser test showed escaping alone still
#: left "http://…" a live link.)
JOINER = "\u2060"
_WWW = re.compile(r"(www)(\.)", re.IGNORECASE)


def plain(text: object, limit: int = 300) -> str:
    """``text`` escaped so that markdown shows it literally, on one line, cut to ``limit``
    characters (a pasted 5,000-character value is not worth a screenful)."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = _WWW.sub(rf"\1{JOINER}\2", s)
    out = []
    for c in s:
        out.append("\\" + c if c in _PUNCTUATION else c)
        if c in ":@":
            out.append(JOINER)
    return "".join(out)


def shown(markdown: str) -> str:
    """What a reader sees of :func:`plain`'s output: the escapes and joiners removed
    (for messages passed on as plain text, such as a benchmark's error)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(JOINER, "")
