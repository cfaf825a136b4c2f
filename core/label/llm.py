"""Optional LLM labeller and verifier over any OpenAI-compatible chat endpoint.

Nothing is sent unless an :class:`LLMSettings` with a base URL and model is given (the CLI
builds one from its flags or environment; ``core`` reads neither). Two prompts, after the
structure the original post found to work: a word-list aptitude-test framing with mostly
negative few-shot examples, whose answer is either "most of these words are ..." or
"these words have no shared semantic meaning"; then, for an answer that names a theme, a
separate verifier prompt answered yes or no. A direction is interpretable when a theme was
named and the verifier said yes.

Requests are rate limited, retried with exponential backoff on 429, 5xx, timeouts and
malformed replies, and every reply is cached in SQLite keyed by endpoint, model and
prompt, so an interrupted sweep resumes where it stopped. HTTP is standard-library urllib.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import CacheError, CoreError
from core.label.prompts import label_messages, parse_theme, parse_yes, verify_messages

LLM_CACHE_FILE = "llm_labels.sqlite"


class LLMError(CoreError):
    """The endpoint could not be reached or answered badly after all retries."""


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to ask.

    Attributes:
        base_url: endpoint root, e.g. ``http://127.0.0.1:8000`` or ``https://host/v1``;
            ``/v1/chat/completions`` (or ``/chat/completions`` after a ``/v1``) is appended.
        model: model name sent in each request.
        api_key: bearer token, if the endpoint needs one.
        timeout: seconds per request.
        max_retries: retries after the first attempt.
        backoff: first retry delay in seconds (doubles each time, with jitter).
        max_backoff: cap on one delay.
        requests_per_minute: client-side rate limit (0: none).
        max_tokens: completion length cap.
        price_per_1k_prompt: currency per 1000 prompt tokens, for the estimate.
        price_per_1k_completion: currency per 1000 completion tokens.
    """

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 30.0
    max_retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0
    requests_per_minute: float = 60.0
    max_tokens: int = 24
    price_per_1k_prompt: float = 0.0
    price_per_1k_completion: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url or not self.model:
            raise ValueError("base_url and model are required")
        if self.timeout <= 0 or self.max_retries < 0 or self.requests_per_minute < 0:
            raise ValueError("timeout must be positive; retries and rate non-negative")

    @property
    def endpoint(self) -> str:
        root = self.base_url.rstrip("/")
        return root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")


# ----------------------------------------------------------------------------- cache


class ReplyCache:
    """SQLite cache of replies keyed by a hash of endpoint, model and messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL, "
                "prompt_tokens INTEGER, completion_tokens INTEGER, timestamp REAL NOT NULL)"
            )
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"The LLM reply cache {self.path} cannot be opened ({exc}); move it aside."
            ) from exc

    @staticmethod
    def key(settings: LLMSettings, messages: Sequence[dict[str, str]]) -> str:
        blob = json.dumps([settings.endpoint, settings.model, list(messages)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, reply: str, usage: dict[str, int] | None = None) -> None:
        u = usage or {}
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                (key, reply, u.get("prompt_tokens"), u.get("completion_tokens"), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        self._db.close()


# ----------------------------------------------------------------------------- client


class RateLimiter:
    """At most ``per_minute`` calls a minute, spaced evenly."""

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            if now < self._next:
                self.sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


class _Retryable(Exception):
    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ChatClient:
    """POSTs chat completions with rate limiting, retries and backoff."""

    def __init__(
        self,
        settings: LLMSettings,
        sleep: Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.limiter = limiter or RateLimiter(settings.requests_per_minute, sleep=sleep)
        self.requests = 0
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}

    def _once(self, messages: Sequence[dict[str, str]]) -> tuple[str, dict[str, int]]:
        s = self.settings
        body = json.dumps(
            {
                "model": s.model,
                "messages": list(messages),
                "temperature": 0,
                "max_tokens": s.max_tokens,
            }  # fmt: skip
        ).encode()
        headers = {"Content-Type": "application/json"}
        if s.api_key:
            headers["Authorization"] = f"Bearer {s.api_key}"
        req = urllib.request.Request(s.endpoint, data=body, headers=headers, method="POST")
        self.limiter.wait()
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=s.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                after = exc.headers.get("Retry-After") if exc.headers else None
                try:
                    delay = float(after) if after is not None else None
                except ValueError:
                    delay = None
                raise _Retryable(f"HTTP {exc.code}", delay) from exc
            detail = exc.read()[:200].decode("utf-8", "replace") if exc.fp else ""
            raise LLMError(
                f"The LLM endpoint refused the request (HTTP {exc.code}: {detail.strip()}); "
                "check the base URL, model name and API key."
            ) from exc
        except TimeoutError as exc:
            raise _Retryable("timed out") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise _Retryable("timed out") from exc
            raise _Retryable(f"unreachable ({exc.reason})") from exc
        except (ConnectionError, OSError) as exc:
            raise _Retryable(f"connection failed ({exc})") from exc
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retryable("malformed reply") from exc
        usage = data.get("usage") or {}
        u = {k: int(usage.get(k, 0) or 0) for k in ("prompt_tokens", "completion_tokens")}
        for k, v in u.items():
            self.usage[k] += v
        return content, u

    def complete(self, messages: Sequence[dict[str, str]]) -> tuple[str, dict[str, int]]:
        """The assistant's reply and token usage.

        Raises:
            LLMError: a non-retryable HTTP error, or retries exhausted.
        """
        s = self.settings
        last = ""
        for attempt in range(s.max_retries + 1):
            try:
                return self._once(messages)
            except _Retryable as exc:
                last = str(exc)
                if attempt == s.max_retries:
                    break
                delay = min(s.max_backoff, s.backoff * 2**attempt) * (0.5 + random.random() / 2)
                if exc.delay is not None:
                    delay = min(s.max_backoff, max(delay, exc.delay))
                self.sleep(delay)
        raise LLMError(
            f"The LLM endpoint failed {s.max_retries + 1} times (last: {last}); "
            "check that it is up, or retry later (finished answers are cached)."
        )


# ----------------------------------------------------------------------------- labeller


@dataclass(frozen=True)
class LLMVerdict:
    """The LLM's decision on one token set.

    Attributes:
        tokens: the tokens shown.
        response: the labeller's answer.
        verifier_response: the verifier's answer ("" when no theme was named).
        label: the theme named, or "".
        interpretable: a theme was named and the verifier said yes.
        cached: every reply came from the cache.
    """

    tokens: tuple[str, ...]
    response: str
    verifier_response: str
    label: str
    interpretable: bool
    cached: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "interpretable": self.interpretable,
            "label": self.label,
            "response": self.response,
            "verifier_response": self.verifier_response,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class SweepEstimate:
    """What a sweep will cost before it is run (tokens are estimated at 4 characters each)."""

    sets: int
    cached: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: float

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _approx_tokens(messages: Sequence[dict[str, str]]) -> int:
    return sum(len(m["content"]) // 4 + 4 for m in messages)


class LLMLabeller:
    """Label and verify token sets through a :class:`ChatClient`, caching every reply."""

    def __init__(self, client: ChatClient, cache: ReplyCache) -> None:
        self.client, self.cache = client, cache

    @property
    def name(self) -> str:
        """The labeller name its verdicts are stored under, ``llm:<model>``
        (:func:`core.label.store.llm_labeller`): two models' runs are kept apart.
        """
        from core.label.store import llm_labeller

        return llm_labeller(self.client.settings.model)

    def _ask(self, messages: list[dict[str, str]]) -> tuple[str, bool]:
        key = ReplyCache.key(self.client.settings, messages)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        reply, usage = self.client.complete(messages)
        self.cache.put(key, reply, usage)
        return reply, False

    def label(self, tokens: Sequence[str]) -> LLMVerdict:
        """Ask the labeller, then (if it named a theme) the verifier."""
        toks = tuple(tokens)
        response, c1 = self._ask(label_messages(toks))
        theme = parse_theme(response)
        verifier, c2 = "", True
        if theme is not None:
            verifier, c2 = self._ask(verify_messages(toks, response.strip()))
        return LLMVerdict(
            tokens=toks,
            response=response.strip(),
            verifier_response=verifier.strip(),
            label=theme or "",
            interpretable=theme is not None and parse_yes(verifier),
            cached=c1 and c2,
        )

    def estimate(self, sets: Sequence[Sequence[str]], verify_share: float = 0.6) -> SweepEstimate:
        """Requests, tokens and cost still to spend on ``sets`` (cached answers are free).

        ``verify_share`` is the expected share of answers that name a theme and so need a
        verifier call (the public GPT-3 set: 0.5 to 0.85).
        """
        s = self.client.settings
        cached, requests, p_tok, c_tok = 0, 0.0, 0.0, 0.0
        for toks in map(tuple, sets):
            msgs = label_messages(toks)
            hit = self.cache.get(ReplyCache.key(s, msgs))
            if hit is None:
                share = verify_share  # the verifier runs only if a theme is named
                requests += 1
                p_tok += _approx_tokens(msgs)
                c_tok += s.max_tokens
            else:
                cached += 1
                if parse_theme(hit) is None:
                    continue
                share = 1.0
            vmsgs = verify_messages(toks, (hit or "most of these words are x.").strip())
            if hit is not None and self.cache.get(ReplyCache.key(s, vmsgs)) is not None:
                continue
            requests += share
            p_tok += share * _approx_tokens(vmsgs)
            c_tok += share * 2
        cost = p_tok / 1000 * s.price_per_1k_prompt + c_tok / 1000 * s.price_per_1k_completion
        return SweepEstimate(
            len(sets), cached, round(requests), round(p_tok), round(c_tok), round(cost, 6)
        )


def open_llm_labeller(
    settings: LLMSettings, cache_dir: Path, sleep: Callable[[float], None] = time.sleep
) -> LLMLabeller:
    """An :class:`LLMLabeller` whose reply cache is ``<cache_dir>/llm_labels.sqlite``."""
    return LLMLabeller(
        ChatClient(settings, sleep=sleep), ReplyCache(Path(cache_dir) / LLM_CACHE_FILE)
    )
