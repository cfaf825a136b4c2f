"""LLM labeller against a local OpenAI-compatible server (http.server on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.label.llm import (
    ChatClient,
    LLMError,
    LLMLabeller,
    LLMSettings,
    RateLimiter,
    ReplyCache,
    open_llm_labeller,
)
from core.label.prompts import (
    NO_THEME,
    label_messages,
    parse_theme,
    parse_yes,
    verify_messages,
)

FISH = ("tuna", "salmon", "trout", "cod", "bass")


class Script:
    """What the server does for each request, in order; afterwards it answers ``default``."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def next(self) -> tuple[str, Any]:
        with self.lock:
            return self.steps.pop(0) if self.steps else ("auto", None)


def _auto_reply(body: dict[str, Any]) -> str:
    """Label fish as fish and everything else as nothing; verify yes for fish."""
    last = body["messages"][-1]["content"]
    if "Claim:" in last:
        return "yes" if "tuna" in last else "no"
    return "most of these words are fish." if "tuna" in last else NO_THEME + "."


def _completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5},
        }
    ).encode()


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests.append({"path": self.path, **body})
                script.headers.append(dict(self.headers))
            kind, arg = script.next()
            if kind == "status":
                self.send_response(arg)
                if arg == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(b'{"error": "nope"}')
                return
            if kind == "sleep":
                time.sleep(arg)
                kind, arg = "auto", None
            if kind == "raw":
                payload = arg
            else:
                payload = _completion(arg if kind == "text" else _auto_reply(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def _settings(url: str, **kw: Any) -> LLMSettings:
    base = dict(base_url=url, model="test-model", timeout=2.0, backoff=0.01, max_retries=3,
                requests_per_minute=0)  # fmt: skip
    base.update(kw)
    return LLMSettings(**base)


def _labeller(url: str, tmp_path: Path, sleeps: list[float] | None = None, **kw: Any):
    sl = sleeps if sleeps is not None else []
    return open_llm_labeller(_settings(url, **kw), tmp_path, sleep=sl.append)


# ----------------------------------------------------------------------------- prompts


def test_prompts_are_mostly_negative_aptitude_tests() -> None:
    msgs = label_messages(FISH)
    assert msgs[0]["role"] == "system" and "aptitude test" in msgs[0]["content"]
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    assert sum(NO_THEME in a for a in answers) > len(answers) / 2
    assert all(a.startswith("most of these words") or NO_THEME in a for a in answers)
    assert msgs[-1] == {"role": "user", "content": "Words: tuna, salmon, trout, cod, bass"}
    v = verify_messages(FISH, "most of these words are fish.")
    assert "yes" in v[0]["content"] and "no" in v[0]["content"]
    assert v[-1]["content"].endswith("Claim: most of these words are fish.")


def test_parsing() -> None:
    assert parse_theme("Most of these words are kinds of fish.") == "kinds of fish"
    assert parse_theme(" these words have no shared semantic meaning") is None
    assert parse_theme("most of these words relate to a website.") == "a website"
    assert parse_theme("") is None
    assert parse_yes(" Yes.") and not parse_yes("no") and not parse_yes("")


def test_endpoint_paths() -> None:
    assert _settings("http://h:1").endpoint == "http://h:1/v1/chat/completions"
    assert _settings("http://h:1/v1/").endpoint == "http://h:1/v1/chat/completions"
    with pytest.raises(ValueError):
        LLMSettings(base_url="", model="m")


# ----------------------------------------------------------------------------- protocol


def test_success_labels_and_verifies(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    lab = _labeller(url, tmp_path, api_key="sk-test")
    v = lab.label(FISH)
    assert v.interpretable and v.label == "fish" and v.verifier_response == "yes"
    assert not v.cached
    assert [r["path"] for r in script.requests] == ["/v1/chat/completions"] * 2
    assert script.requests[0]["model"] == "test-model"
    assert script.headers[0]["Authorization"] == "Bearer sk-test"
    assert lab.client.usage == {"prompt_tokens": 200, "completion_tokens": 10}
    # no theme: the verifier is not asked
    v2 = lab.label(("ibr", "orage", "zz"))
    assert not v2.interpretable and v2.label == "" and v2.verifier_response == ""
    assert len(script.requests) == 3


def test_theme_rejected_by_verifier(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    script.steps = [("text", "most of these words are suffixes."), ("text", "No")]
    v = _labeller(url, tmp_path).label(("ership", "ouch"))
    assert v.label == "suffixes" and not v.interpretable


def test_429_then_success_retries(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    script.steps = [("status", 429), ("status", 429)]
    sleeps: list[float] = []
    v = _labeller(url, tmp_path, sleeps).label(FISH)
    assert v.interpretable
    assert len(script.requests) == 4 and len(sleeps) == 2
    assert sleeps[1] > 0  # backoff applied


def test_500_exhausts_retries(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    script.steps = [("status", 500)] * 10
    sleeps: list[float] = []
    with pytest.raises(LLMError, match="failed 4 times.*HTTP 500"):
        _labeller(url, tmp_path, sleeps).label(FISH)
    assert len(script.requests) == 4
    assert len(sleeps) == 3 and all(d > 0 for d in sleeps)


def test_client_error_is_not_retried(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    script.steps = [("status", 401)]
    with pytest.raises(LLMError, match="HTTP 401.*API key"):
        _labeller(url, tmp_path).label(FISH)
    assert len(script.requests) == 1


def test_timeout_is_retried(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    script.steps = [("sleep", 1.5)]
    v = _labeller(url, tmp_path, timeout=0.3).label(FISH)
    assert v.interpretable and len(script.requests) >= 2


def test_malformed_replies(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    script.steps = [("raw", b"not json"), ("raw", b'{"choices": []}'),
                    ("raw", b'{"choices": [{"message": {"content": null}}]}')]  # fmt: skip
    v = _labeller(url, tmp_path, max_retries=3).label(FISH)
    assert v.interpretable and len(script.requests) == 5
    script.steps = [("raw", b"{")] * 10
    with pytest.raises(LLMError, match="malformed"):
        _labeller(url, tmp_path / "other", max_retries=1).label(("x", "y"))


def test_unreachable_endpoint(tmp_path: Path) -> None:
    lab = _labeller("http://127.0.0.1:9", tmp_path, max_retries=1)
    with pytest.raises(LLMError, match="failed 2 times"):
        lab.label(FISH)


def test_resume_from_cache(server: tuple[str, Script], tmp_path: Path) -> None:
    url, script = server
    sets = [FISH, ("ibr", "orage"), ("tuna", "cod", "zz")]
    lab = _labeller(url, tmp_path)
    lab.label(sets[0])
    lab.cache.close()
    n0 = len(script.requests)
    # a new process: same cache file, the first set costs nothing, the rest are asked
    lab2 = _labeller(url, tmp_path)
    est = lab2.estimate(sets)
    assert est.sets == 3 and est.cached == 1 and est.prompt_tokens > 0
    out = [lab2.label(s) for s in sets]
    assert out[0].cached and not out[1].cached
    assert out[0].interpretable and not out[1].interpretable and out[2].interpretable
    assert len(script.requests) == n0 + 1 + 2  # set 2: label only; set 3: label + verify
    assert lab2.estimate(sets).requests == 0
    assert len(ReplyCache(tmp_path / "llm_labels.sqlite")) == 5


def test_estimate_counts_and_cost(tmp_path: Path) -> None:
    s = _settings("http://127.0.0.1:9", price_per_1k_prompt=1.0, price_per_1k_completion=2.0)
    lab = LLMLabeller(ChatClient(s), ReplyCache(tmp_path / "c.sqlite"))
    est = lab.estimate([FISH] * 10, verify_share=0.5)
    assert est.requests == 15 and est.cached == 0
    assert est.cost == pytest.approx(est.prompt_tokens / 1000 + 2 * est.completion_tokens / 1000)


def test_rate_limiter_spaces_calls() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    rl = RateLimiter(120, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        rl.wait()
    assert slept == [pytest.approx(0.5), pytest.approx(0.5)]


def test_verdicts_are_stored_under_the_model_name(tmp_path: Path) -> None:
    from core.label.store import llm_labeller

    a = LLMLabeller(ChatClient(_settings("http://127.0.0.1:9")), ReplyCache(tmp_path / "c.sqlite"))
    assert a.name == llm_labeller(a.client.settings.model) == f"llm:{a.client.settings.model}"
