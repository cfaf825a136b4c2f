"""The Prompt page: its builders on a tiny model (no Streamlit) and the page (AppTest)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.lens import prompt_activations, run_prompt
from dashboard.builders import prompt as pb
from dashboard.markup import shown
from dashboard.registry import page as registry_page
from dashboard.viewstate import PromptView
from tests.dashboard.conftest import APP

PROMPT_PAGE = registry_page("prompt").script
TIMEOUT = 240
PROMPT = "the fire burned with hot"


# ------------------------------------------------------------------------- builders


def test_lens_frame_and_heatmap(analysis):
    df = pb.compute_lens(analysis, run_prompt(analysis, PROMPT), "", 3)
    n_rows = analysis.meta.n_layers + 1
    n_pos = df["position"].nunique()
    assert len(df) == n_rows * n_pos
    assert list(df[df["position"] == 0]["layer"]) == ["embed", "L0", "L1"]
    last = df[df["position"] == n_pos - 1]
    assert last["rank"].isna().all() and last["target"].eq("").all()
    rest = df[df["position"] < n_pos - 1]
    assert (rest["rank"] >= 1).all() and rest["prob"].between(0, 1).all()
    # The target of each position is the next input token.
    tokens = list(df[df["row"] == 0].sort_values("position")["token"])
    assert list(df[df["row"] == 0].sort_values("position")["target"]) == [*tokens[1:], ""]
    # The last row is the model's own prediction: its top token is the argmax of the logits.
    from core.edit.hf import plain_model

    run = run_prompt(analysis, PROMPT)
    with torch.no_grad():
        logits = plain_model(analysis)(input_ids=torch.tensor([run.ids])).logits[0]
    top = logits.argmax(-1).tolist()
    final = df[df["row"] == n_rows - 1].sort_values("position")
    assert list(final["top1"]) == [analysis.tokens.display[i] for i in top]
    for show in pb.SHOW:
        spec = pb.lens_heatmap(df, show).to_dict()
        rect = spec["layer"][0]
        assert rect["mark"]["type"] == "rect"
        color = rect["encoding"]["color"]
        assert color["condition"]["field"] == "shade"  # cells without a target are grey
        assert color["condition"]["title"] == pb.SHOW[show]
        assert {t["field"] for t in rect["encoding"]["tooltip"]} >= {"top", "token", "rank"}
        params = spec.get("params", []) + rect.get("params", [])
        assert sorted(p["name"] for p in params) == sorted([pb.PICK, pb.CHOSEN])
        stroke = rect["encoding"]["stroke"]["condition"]
        assert stroke["value"] == "red" and f"{pb.CHOSEN}.position" in stroke["test"]
    with pytest.raises(ValueError):
        pb.lens_heatmap(df, "nope")
    # A typed target is ranked at every position.
    # The colour is the rank or the probability; cells without a target are flagged.
    chart_data = pd.DataFrame(pb.lens_heatmap(df, "prob").to_dict()["datasets"].popitem()[1])
    has = chart_data["has_target"]
    assert (chart_data.loc[has, "shade"] == chart_data.loc[has, "prob"]).all()
    assert (~has).sum() == n_rows  # the last position
    typed = pb.compute_lens(analysis, run, " fire", 3)
    assert typed["target"].nunique() == 1 and typed["rank"].notna().all()


def test_the_outlined_cell_is_a_parameter_of_one_spec(analysis):
    """A chart built for a chosen cell equals the cell-less chart with the cell patched
    in (with_chosen), and patching leaves the cached spec as it was."""
    df = pb.compute_lens(analysis, run_prompt(analysis, PROMPT), "", 3)

    def chosen_value(spec):
        (p,) = [p for p in spec["params"] if p["name"] == pb.CHOSEN]
        return p["value"]

    base = pb.lens_heatmap(df, "rank").to_dict()
    assert chosen_value(base) == {"position": -1, "row": -1}
    built = pb.lens_heatmap(df, "rank", (2, 1)).to_dict()
    patched = pb.with_chosen(base, (2, 1))
    assert chosen_value(patched) == chosen_value(built) == {"position": 2, "row": 1}
    assert chosen_value(base) == {"position": -1, "row": -1}
    assert {k: v for k, v in patched.items() if k != "params"} == {
        k: v for k, v in base.items() if k != "params"
    }
    assert chosen_value(pb.with_chosen(patched, None)) == {"position": -1, "row": -1}


def test_picked_cell_and_rows():
    assert pb.picked_cell(None) is None
    assert pb.picked_cell({pb.PICK: []}) is None
    assert pb.picked_cell({pb.PICK: [{"position": 3, "row": 2}]}) == (3, 2)
    assert pb.block_of_row(0) == 0 and pb.block_of_row(2) == 1


def test_active_frame(analysis):
    acts = prompt_activations(analysis, run_prompt(analysis, PROMPT).capture)
    for side in ("read", "write"):
        df = pb.compute_active(analysis, acts, 1, 2, side, 6, 5)
        assert len(df) == 6
        sizes = list(df["activation"].abs())
        assert sizes == sorted(sizes, reverse=True)
        assert set(df["kind"]) <= (
            {"ov", "mlp_in", "mlp_gate"} if side == "read" else {"ov", "mlp_out"}
        )
        assert all(len(t.split()) <= 5 for t in df["tokens"])
        assert (df["end"] == df["activation"].map(lambda v: "top" if v >= 0 else "bottom")).all()
        kind, layer, head, index, end = pb.row_direction(df.iloc[0])
        assert layer == 1 and (head is None) == (kind != "ov") and end == df["end"].iloc[0]


def test_prompt_view_params():
    v = PromptView("the cat", " dog", 2, 1, "prob")
    errors: list[str] = []
    assert PromptView.from_params(v.to_params(), errors) == v and errors == []
    assert PromptView().to_params() == {}
    assert PromptView("x").to_params() == {"lens": "x"}
    bad = PromptView.from_params({"lens": "x", "lens_pos": "two", "lens_show": "hue"}, errors)
    assert bad == PromptView("x") and len(errors) == 2


# ------------------------------------------------------------------------- the page


@pytest.fixture(autouse=True)
def _env(dash_env, analysis):
    return dash_env


def app(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(PROMPT_PAGE)
    return at.run()


def test_url_state_round_trip():
    at = app({"lens": PROMPT, "lens_pos": "2", "lens_layer": "0", "lens_show": "prob"})
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []
    assert at.text_input(key="prompt.text").value == PROMPT
    assert at.selectbox(key="prompt.position").value == 2
    assert at.selectbox(key="prompt.layer").value == 0
    assert at.radio(key="prompt.show").value == "prob"
    assert len(at.get("vega_lite_chart")) == 1
    assert len(at.main.dataframe) == 2  # reading and writing sides
    assert "L0 at position 2" in at.main.subheader[0].value
    # Picking another position and layer goes to the URL.
    at.selectbox(key="prompt.position").set_value(1).run()
    at.selectbox(key="prompt.layer").set_value(1).run()
    params = dict(at.query_params)
    assert params["lens"] == PROMPT and params["lens_pos"] == "1" and params["lens_layer"] == "1"
    assert "L1 at position 1" in at.main.subheader[0].value
    # A new prompt starts again at the last position and layer.
    at.text_input(key="prompt.text").set_value("a cat and a dog").run()
    params = dict(at.query_params)
    assert "lens_pos" not in params and params["lens"] == "a cat and a dog"


def test_bad_prompt_gives_one_sentence():
    at = app({"lens": "fire " * 200})
    assert not at.exception, at.exception
    msgs = [shown(e.value) for e in at.error]
    assert len(msgs) == 1 and msgs[0].startswith("The prompt is ") and msgs[0].count(". ") == 0
    assert len(at.main.dataframe) == 0


def test_no_prompt_asks_for_one():
    at = app({})
    assert not at.exception
    assert any("Type a prompt" in i.value for i in at.info)
    assert "lens" not in dict(at.query_params)


def test_one_forward_pass_per_prompt(monkeypatch):
    """The lens, both sides' tables and a click on another cell read one forward pass;
    an edited target reuses it too, and only a new prompt runs the model again."""
    import core.lens.prompt as lens_prompt

    calls: list[tuple[int, ...]] = []
    real = lens_prompt.capture

    def counted(model, ids, *args, **kwargs):
        calls.append(tuple(ids))
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(lens_prompt, "capture", counted)
    prompt = "one pass for the lens and the cells"  # no other test runs it (shared caches)
    at = app({"lens": prompt})
    assert not at.exception, at.exception
    assert len(at.get("vega_lite_chart")) == 1 and len(at.main.dataframe) == 2
    assert len(calls) == 1
    at.selectbox(key="prompt.position").set_value(1).run()
    at.selectbox(key="prompt.layer").set_value(0).run()
    assert "L0 at position 1" in at.main.subheader[0].value
    at.text_input(key="prompt.target").set_value(" fire").run()
    assert not at.exception and [e.value for e in at.error] == []
    assert len(at.main.dataframe) == 2 and len(calls) == 1
    at.text_input(key="prompt.text").set_value(prompt + " again").run()
    assert len(calls) == 2 and len(set(calls)) == 2
