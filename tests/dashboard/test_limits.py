"""The bound on expensive actions: with every job slot taken, the edit measurement and the
labeller sweep say the server is busy (one sentence, no work done), and an export waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import limits
from dashboard.registry import page
from tests.dashboard.conftest import APP

TIMEOUT = 240
PROMPT = "the fire burned with hot"


@pytest.fixture
def all_slots_taken(monkeypatch) -> Iterator[None]:
    """Every slot held, as if other visitors ran that many jobs."""
    monkeypatch.setattr(limits, "WAIT_S", 0.05)
    for _ in range(limits.SLOTS):
        assert limits._JOBS.acquire(timeout=5)
    try:
        yield
    finally:
        for _ in range(limits.SLOTS):
            limits._JOBS.release()


def busy(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "already running" in w.value]


@pytest.fixture
def edit_page(dash_env, analysis) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(page("edit").script)
    at.run()
    at.button(key="edit.add").click().run()
    at.text_input(key="edit.prompt").input(PROMPT)
    at.text_input(key="edit.target").input(" f")
    at.number_input(key="edit.max_new").set_value(2)
    return at


def test_edit_measurement_waits_for_a_slot(edit_page: AppTest, all_slots_taken) -> None:
    at = edit_page.run()
    assert not at.exception, at.exception
    msgs = busy(at)
    assert len(msgs) == 1 and msgs[0].endswith("try again in a minute.")
    assert len(at.main.dataframe) == 1  # the edit list only: nothing was measured
    assert at.get("vega_lite_chart") == []


def test_edit_measurement_runs_when_a_slot_is_free(edit_page: AppTest) -> None:
    at = edit_page.run()
    assert not at.exception, at.exception
    # The edit list, the measurements, the random baselines and the continuations.
    assert busy(at) == [] and len(at.main.dataframe) == 4
    # The slot was given back: all of them can be taken again.
    for _ in range(limits.SLOTS):
        assert limits._JOBS.acquire(timeout=5)
    for _ in range(limits.SLOTS):
        limits._JOBS.release()


def test_labeller_sweep_waits_for_a_slot(dash_env, analysis, all_slots_taken) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(page("statistics").script)
    at.run()
    at.button(key="statistics.run").click().run()
    assert not at.exception, at.exception
    assert len(busy(at)) == 1 and [s.value for s in at.success] == []


def test_an_export_waits_for_a_slot(all_slots_taken) -> None:
    done = threading.Event()
    export = limits.queued(lambda: done.set() or "csv")
    t = threading.Thread(target=export)
    t.start()
    t.join(timeout=0.3)
    assert t.is_alive() and not done.is_set()  # queued behind the jobs holding the slots
    limits._JOBS.release()
    t.join(timeout=10)
    assert done.is_set()
    assert limits._JOBS.acquire(timeout=5)  # the export gave its slot back
