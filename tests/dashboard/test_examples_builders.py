"""The examples panel's builders, without Streamlit."""

from __future__ import annotations

from core.activations import DirectionExamples, Example
from dashboard.builders import examples as ev


def _view() -> DirectionExamples:
    top = (
        Example(3, "fortunes", 5, 2.5, ("a", " <b>cat</b>", "\nsat"), 1),
        Example(4, "gcide", 0, 1.0, (" dog", " ran"), 0),
    )
    bottom = (Example(7, "man", 2, -2.0, ("x", "y", "z"), 2),)
    return DirectionExamples(
        "mlp_in", "read", 1, None, 0, top, bottom, 0.1, 0.7, (1, 0, 5, 2), -4.0, 4.0, 0.02, 8
    )


def test_example_frame_marks_the_token_and_keeps_text_plain():
    f = ev.example_frame(_view().top)
    assert list(f["token"]) == ["␣<b>cat</b>", "␣dog"]  # markup stays text: cells are plain
    assert list(f["before"]) == ["a", ""]
    assert f["after"][1] == ev.NEWLINE + "sat"
    styled = ev.style_examples(f, ev.scale_of(_view())).to_html()
    assert "font-weight: bold" in styled


def test_histogram_bins_cover_the_range():
    h = ev.histogram_frame(_view())
    assert list(h["count"]) == [1, 0, 5, 2]
    assert h["lo"].iloc[0] == -4.0 and h["hi"].iloc[-1] == 4.0
    assert abs(h["share"].sum() - 1) < 1e-9
    spec = ev.histogram_chart(_view()).to_dict()
    assert spec["mark"]["type"] == "bar"
