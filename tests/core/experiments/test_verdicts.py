"""Where the knockout's verdicts come from: the chosen labeller's, a manual label
overriding it, the newest of several LLMs; undecided rows and other layers left out."""

from __future__ import annotations

import dataclasses
import time

from core.experiments.verdicts import stored_verdicts
from core.label.store import LabelRecord, LabelStore, reading


def test_verdicts_prefer_manual_then_the_newest_of_the_source(analyses, tmp_path):
    a = analyses("neox", "raw")
    meta = a.meta
    now = time.time()

    def rec(i, labeller, yes, dt=0.0):
        return LabelRecord(meta.name, meta.weights_hash, "mlp_in", 0, None, i, labeller, yes,
                           timestamp=now + dt, **reading(a.settings))  # fmt: skip

    with LabelStore.in_cache(a.settings.cache_dir) as labels:
        labels.put([rec(0, "offline", True), rec(0, "manual", False), rec(1, "offline", True),
                    rec(1, "llm:a", False, 1.0), rec(1, "llm:b", True, 2.0),
                    rec(2, "llm:a", True), rec(3, "offline", None)])  # fmt: skip
    offline = stored_verdicts(a, ["mlp_in"], [0], "offline")
    assert offline == {("mlp_in", 0, None, 0): False, ("mlp_in", 0, None, 1): True}
    llm = stored_verdicts(a, ["mlp_in"], [0], "llm")
    assert llm == {k: True for k in [("mlp_in", 0, None, i) for i in (1, 2)]} | {
        ("mlp_in", 0, None, 0): False
    }
    assert stored_verdicts(a, ["mlp_in"], [1], "offline") == {}
    # A verdict made under another reading is about other directions: it does not count.
    other = "raw" if a.settings.projection != "raw" else "centred"
    with LabelStore.in_cache(a.settings.cache_dir) as labels:
        labels.put(dataclasses.replace(rec(4, "manual", True), projection=other))
        labels.put(dataclasses.replace(rec(1, "manual", False), processing="post"))
    assert stored_verdicts(a, ["mlp_in"], [0], "offline") == offline


def test_a_direction_is_interpretable_when_either_end_is(analyses):
    a = analyses("neox", "raw")
    meta = a.meta
    now = time.time()

    def rec(i, end, labeller, yes, dt=0.0):
        return LabelRecord(meta.name, meta.weights_hash, "mlp_out", 0, None, i, labeller, yes,
                           end=end, timestamp=now + dt, **reading(a.settings))  # fmt: skip

    with LabelStore.in_cache(a.settings.cache_dir) as labels:
        labels.put([rec(0, "top", "offline", False), rec(0, "bottom", "offline", True),
                    rec(1, "top", "offline", False), rec(1, "bottom", "offline", False),
                    rec(2, "bottom", "offline", True), rec(2, "bottom", "manual", False),
                    rec(3, "top", "offline", True), rec(3, "bottom", "offline", None),
                    rec(4, "bottom", "offline", False)])  # fmt: skip
    got = stored_verdicts(a, ["mlp_out"], [0], "offline")
    # 0: its bottom end; 2: a manual "no" overrides the bottom end's "yes", on that end only.
    assert got == {("mlp_out", 0, None, i): yes
                   for i, yes in [(0, True), (1, False), (2, False), (3, True), (4, False)]}  # fmt: skip
