"""The dashboard on a warm cache: its first pages open without loading the model."""

from __future__ import annotations

import json

from tests.child import child_json
from tests.dashboard.conftest import APP

# A fresh interpreter: which pages loaded the model, and what got imported.
_CHILD = """
import json, sys
from streamlit.testing.v1 import AppTest
from dashboard import config, loaders, state
from dashboard.registry import page

out = {}
for key in json.loads(sys.argv[2]):
    at = AppTest.from_file(sys.argv[1], default_timeout=180)
    at.switch_page(page(key).script)
    at.run()
    slot = loaders._slot(config.default_model(), "post", str(config.cache_dir()))
    out[key] = {
        "errors": [e.value for e in at.error] + [str(e.value) for e in at.exception],
        "loaded": None if slot.value is None else slot.value.source.loaded,
    }
    if key == "spectra":
        from core.random_control import controls_ready

        out["charts"] = len(at.get("vega_lite_chart"))
        out["controls_ready"] = controls_ready(slot.value)
out["modules"] = [m for m in ("transformers", "transformer_lens") if m in sys.modules]
print(json.dumps(out))
"""


def _visit(pages: list[str], dash_env: dict[str, str]) -> dict:
    """:data:`_CHILD`'s report of opening ``pages`` in a fresh interpreter."""
    return _run(_CHILD, dash_env, APP, json.dumps(pages))


def _run(code: str, dash_env: dict[str, str], *args: str) -> dict:
    """The JSON that ``code`` prints last, run in a fresh interpreter with ``args``."""
    return child_json(code, *args, env=dash_env)


def test_first_pages_on_a_warm_cache_load_no_model(dash_env, analysis) -> None:
    # `analysis` wrote the cache entry (and its checkpoint part) in this process. Spectra
    # draw their random control from the scales the checkpoint part keeps.
    pages = ["overview", "spectra", "grid", "atlas", "search", "statistics"]
    out = _visit(pages, dash_env)
    for key in pages:
        assert out[key] == {"errors": [], "loaded": False}, (key, out[key])
    assert out["modules"] == [], out


def test_spectra_draw_their_control_without_projecting_every_control(
    dash_env, analysis, tmp_path
) -> None:
    """The spectra page shows its kind's random control from that kind's decomposition
    alone: no kind's control is projected, and no controls part is written."""
    import shutil

    from core.cache import store

    cache = tmp_path / "cache"
    shutil.copytree(dash_env["SVDLENS_CACHE_DIR"], cache)
    for manifest in cache.rglob(store.CONTROLS_MANIFEST):  # other tests may have built them
        manifest.unlink()
    out = _visit(["spectra"], {**dash_env, "SVDLENS_CACHE_DIR": str(cache)})
    assert out["spectra"] == {"errors": [], "loaded": False}
    assert out["charts"] == 2  # weights and control
    assert out["controls_ready"] is False
    assert not store.controls_on_disk(cache, analysis.meta, "post")


def test_search_edit_spec_is_rebuilt_when_a_fill_lands(monkeypatch, tmp_path) -> None:
    """The edit page's "remove all matches" reads the index of the current fill generation:
    an answer cached while the entry was filling is not served after the index rebuilt."""
    from dashboard import loaders, state
    from dashboard.viewstate import LastSearch, SearchQuery

    generation = {"now": 0}
    monkeypatch.setenv("SVDLENS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(loaders, "_generation", lambda *a: generation["now"])
    monkeypatch.setattr(loaders, "_search_index", lambda m, p, c, g: f"index-{g}")
    monkeypatch.setattr(
        loaders.edit_views, "compute_search_spec", lambda index, q, t, top: f"spec of {index}"
    )
    sel = state.Selection(model=f"m-{tmp_path.name}")
    search = LastSearch(sel.model, "post", SearchQuery(query="fire, water"))
    assert loaders.search_edit_spec(sel, search) == "spec of index-0"
    assert loaders.search_edit_spec(sel, search) == "spec of index-0"
    generation["now"] = 2
    assert loaders.search_edit_spec(sel, search) == "spec of index-2"


def test_a_settled_index_warms_its_nulls_in_the_background(dash_env, analysis, monkeypatch) -> None:
    """The search page's index computes the nulls of common query shapes on its own, so
    a typed query of such a shape ranks the index once, not 101 times; the switch turns
    that off."""
    import core.search.ranking as ranking
    from core.search.engine import search
    from dashboard import config, loaders

    args = (config.default_model(), "post", dash_env["SVDLENS_CACHE_DIR"], -1)
    loaders._search_index.clear()
    index = loaders._search_index(*args)
    warmer = index.memo["warmer"]
    assert warmer.wait(300)
    assert warmer.error is None and warmer.total and warmer.held == warmer.total

    def refuse(*a, **k):
        raise AssertionError("a null was computed")

    monkeypatch.setattr(ranking, "best_scores", refuse)
    for query in ("the", "the, cat", "zebra, quantum, the"):
        assert search(index, query).null is not None

    monkeypatch.setenv("SVDLENS_WARM_NULLS", "0")
    loaders._search_index.clear()
    assert "warmer" not in loaders._search_index(*args).memo
    loaders._search_index.clear()


_PRELOAD_CHILD = """
import json, sys, time
from streamlit.testing.v1 import AppTest
import core.model.source as source
from dashboard import config, loaders
from dashboard.registry import page

loads = []
real = source.ModelSource._load_model


def counted(self, *args, **kwargs):
    loads.append(1)
    return real(self, *args, **kwargs)


source.ModelSource._load_model = counted
at = AppTest.from_file(sys.argv[1], default_timeout=180)
at.switch_page(page(sys.argv[2]).script)
at.run()
args = (config.default_model(), "post", str(config.cache_dir()))
src = loaders._slot(*args).value.source
# Nothing here asks for the model: only the page's own background load can make it ready.
deadline = time.monotonic() + 120
while not (src.model_ready and src.loaded) and time.monotonic() < deadline:
    time.sleep(0.1)
out = {"info": [i.value for i in at.info], "ready": src.model_ready, "weights": src.loaded}
out["loads_before_the_prompt"] = len(loads)
if sys.argv[2] == "prompt":
    at.text_input(key="prompt.text").input("the fire burned").run()
    out["errors"] = [e.value for e in at.error] + [str(e.value) for e in at.exception]
    out["charts"] = len(at.get("vega_lite_chart"))
out["loads"] = len(loads)
print(json.dumps(out))
"""


def test_a_page_that_needs_a_forward_pass_loads_the_model_while_its_prompt_is_empty(
    dash_env, analysis
) -> None:
    """The Prompt and Edit pages with an empty prompt start the model's load, then the
    read of its weights, in the background; the prompt's forward pass then uses that
    model (one load in all)."""
    for key, hint in (("prompt", "Type a prompt"), ("edit", "Give a prompt")):
        out = _run(_PRELOAD_CHILD, dash_env, APP, key)
        assert any(hint in i for i in out["info"]), out
        assert out["ready"] is True and out["loads_before_the_prompt"] == 1, out
        assert out["weights"] is True, out  # read after the model, for the directions
        if key == "prompt":
            assert out["errors"] == [] and out["charts"] >= 1, out
        assert out["loads"] == 1, out
