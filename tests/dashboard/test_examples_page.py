"""The grid's dataset examples, headless: built in the background from a button, then
shown for the picked direction with its histogram and strongly active share."""

from __future__ import annotations

import time

import pytest

from tests.dashboard.test_app import GRID, app, errors


@pytest.fixture(autouse=True)
def _env(dash_env, analysis, monkeypatch):
    monkeypatch.setenv("SVDLENS_EXAMPLE_TOKENS", "300")
    return dash_env


def test_examples_are_built_in_the_background_then_shown():
    at = app(script=GRID)
    assert errors(at) == []
    assert not at.metric  # nothing built yet: a button instead
    at.button(key="grid.ex_build").click().run()
    assert not at.exception
    deadline = time.monotonic() + 120
    while not at.metric and time.monotonic() < deadline:
        time.sleep(1.0)
        at.run()
    assert not at.exception and errors(at) == []
    labels = [m.label for m in at.metric]
    assert "Strongly active" in labels
    frames = [d.value for d in at.main.dataframe]
    tops = [f for f in frames if "token" in f.columns]
    assert len(tops) == 2  # top and bottom
    top, bottom = tops
    assert len(top) == 10 and top["activation"].is_monotonic_decreasing
    assert bottom["activation"].is_monotonic_increasing
    assert float(top["activation"].iloc[0]) >= float(bottom["activation"].iloc[0])
    # Another direction and side: another table, no error.
    at.selectbox(key="grid.ex_dir").set_value(1).run()
    at.radio(key="grid.ex_side").set_value("write").run()
    assert not at.exception and errors(at) == []
    again = [d.value for d in at.main.dataframe if "token" in d.value.columns]
    assert not again[0].equals(top)
