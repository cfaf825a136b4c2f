"""Experiments page: rank-k truncation and loss recovered; knockout of the directions
labelled interpretable against matched and random ones; a per-layer input-token probe."""

import streamlit as st
from core.experiments import DEFAULT_KS, truncation_cost
from core.settings import KIND_NAMES
from dashboard import components
from dashboard.builders import experiments
from dashboard.loaders import experiments as exp_loaders

sel, a = components.setup()

kinds = ["ov", "mlp_in", "mlp_out"] + (["mlp_gate"] if a.meta.gated else [])
c1, c2, c3 = st.columns([2, 3, 1])
kind = c1.selectbox("Matrix", kinds, format_func=KIND_NAMES.__getitem__, key="experiments.kind")
rank = a.svd.kinds[kind].decomposition.rank
grid = [k for k in DEFAULT_KS if k < rank] + [rank]
ks = c2.multiselect("Kept ranks k", grid, default=grid, key="experiments.ks")
draws = c3.number_input("Random draws", 0, 3, 1, key="experiments.draws")
layers = st.multiselect(
    "Layers",
    list(range(a.meta.n_layers)),
    default=list(range(a.meta.n_layers)),
    key="experiments.layers",
)
st.caption(
    "Each layer's matrix (OV: every head of the layer, each to its own top k) is replaced by "
    "its top-k singular truncation, by k of its singular directions drawn at random (dashed), "
    "and by zero; loss recovered = 1 − (L_k − L) / (L_zero − L) on the reference text. "
    "Every point is a forward pass over the reference windows. Where zeroing a matrix raises "
    "the loss by under 0.01 nats the ratio is noise: its k for 90%/99% is left empty."
)
run = st.button("Run", type="primary", key="experiments.run", disabled=not (ks and layers))
if ks and layers:
    cost = truncation_cost(ks, rank, int(draws), layers, a.meta.n_layers)
    st.caption(experiments.cost_text(cost))
args = (kind, tuple(sorted(layers)), tuple(sorted(ks)), int(draws))
BUSY = "The server is busy with other visitors' jobs; press the button again in a minute."


def remembered(name: str, key: str, build):  # type: ignore[no-untyped-def]
    """This session's last inputs of ``name`` (``key`` in the session), else those of the
    run last started on the model by any session while the server still keeps it (a
    reloaded page finds its run), said in a caption."""
    last = st.session_state.get(key)
    if last is None:
        last = exp_loaders.latest(name, sel)
        if last is None or exp_loaders.experiment(name, sel, build, *last) is None:
            return None
        st.caption(experiments.latest_caption(name, last))
    return last


def background(name: str, clicked: bool, build, last, what: str):  # type: ignore[no-untyped-def]
    """The result of ``build`` on ``last`` once its background run is done: started when
    ``clicked``, its progress drawn meanwhile (other pages stay usable); ``None`` before
    that, after an error, and before the first click."""
    if last is None:
        return None
    if clicked and not exp_loaders.start_experiment(name, sel, build, *last):
        st.warning(BUSY)
        return None
    job = exp_loaders.experiment(name, sel, build, *last)
    if job is None:
        st.info(f"Press the button to run {what}.")
        return None
    return components.job_result(job, what.capitalize())


if run:
    st.session_state["experiments.last"] = args
last = remembered("truncation", "experiments.last", experiments.truncation_frame)
if last is None:
    st.info("Choose a matrix, ranks and layers, then press Run.")
df = background("truncation", run, experiments.truncation_frame, last, "the truncation sweep")
if df is not None:
    st.altair_chart(experiments.truncation_chart(df), width="stretch", key="experiments.chart")
    st.dataframe(
        experiments.summary_frame(df), hide_index=True, width="stretch", key="experiments.summary"
    )
    st.download_button(
        "Download CSV", df.to_csv(index=False), "truncation.csv", "text/csv", key="experiments.csv"
    )

st.subheader("Knock out the interpretable directions, or as many others")
k1, k2, k3 = st.columns([3, 2, 1])
ko_kinds = k1.multiselect(
    "Matrices",
    kinds,
    default=["mlp_in", "mlp_out"],
    format_func=KIND_NAMES.__getitem__,
    key="experiments.ko_kinds",
)
ko_labeller = k2.selectbox(
    "Labels",
    ["offline", "llm", "manual"],
    format_func={
        "offline": "offline labeller (labels missing ones first)",
        "llm": "LLM labeller (stored verdicts)",
        "manual": "manual labels only",
    }.__getitem__,
    key="experiments.ko_labeller",
)
ko_draws = k3.number_input("Random sets", 0, 5, 3, key="experiments.ko_draws")
ko_layers = st.multiselect(
    "Layers",
    list(range(a.meta.n_layers)),
    default=list(range(a.meta.n_layers)),
    key="experiments.ko_layers",
)
st.caption(
    "Every direction the stored labels call interpretable (a manual label overrides the "
    "labeller's) is deleted at once; so are as many uninterpretable ones, each nearest in "
    "singular value within the same matrix and layer, and random sets of the same size. "
    "Δ log p is the mean change of log p(next token) where the next token is among the "
    "deleted directions' top 15 tokens (their own, or the interpretable set's)."
)
ko_run = st.button(
    "Run knockout", key="experiments.knockout", disabled=not (ko_kinds and ko_layers)
)
if ko_run:
    st.session_state["experiments.last_knockout"] = (
        tuple(k for k in kinds if k in ko_kinds),
        tuple(sorted(ko_layers)),
        ko_labeller,
        int(ko_draws),
    )
ko_last = remembered("knockout", "experiments.last_knockout", experiments.knockout_frame)
ko = background("knockout", ko_run, experiments.knockout_frame, ko_last, "the knockout")
if ko is not None:
    st.altair_chart(experiments.knockout_chart(ko), key="experiments.knockout_chart")
    first = ko.drop_duplicates("set")
    st.caption(
        f"Deleted {int(first['n_deleted'].iloc[0])} directions per set (sum of singular "
        f"values: interpretable {first['sigma_sum'].iloc[0]:.2f}, matched "
        f"{first['sigma_sum'].iloc[1]:.2f}); unedited loss {ko['loss_orig'].iloc[0]:.3f} "
        "nats. Bars: the set (random: mean of the draws); dots: each draw."
    )
    d1, d2, _ = st.columns([1, 1, 4])
    d1.download_button(
        "Download CSV", ko.to_csv(index=False), "knockout.csv", "text/csv", key="experiments.ko_csv"
    )
    d2.download_button(
        "Download JSON",
        ko.to_json(orient="records"),
        "knockout.json",
        "application/json",
        key="experiments.ko_json",
    )

st.subheader("What the residual stream knows about its input")
p1, p2 = st.columns([3, 1])
previous = p1.toggle("Probe the previous token", value=False, key="experiments.previous")
probe_run = p2.button("Run probe", key="experiments.probe")
if probe_run:
    st.session_state["experiments.last_probe"] = (previous,)
probe_last = remembered("probe", "experiments.last_probe", experiments.probe_frame)
probe = background("probe", probe_run, experiments.probe_frame, probe_last, "the probe")
if probe is not None:
    st.altair_chart(experiments.probe_chart(probe), width="stretch", key="experiments.probe_chart")
    st.dataframe(
        probe[probe["measure"] == "top-1"]
        .drop(columns=["measure"])
        .rename(columns={"accuracy": "top-1 accuracy"}),
        hide_index=True,
        width="stretch",
        key="experiments.probe_table",
    )
    st.caption(
        "A logistic-regression probe per layer (scikit-learn), trained on three quarters of "
        "the reference windows and scored on the rest, leaving out each window's first "
        "position (no context; a model with an attention sink puts a massive activation "
        "there). embed_cosine: class vectors against their tokens' W_E rows (shuffled: "
        "against other tokens'); subspace_share: share of the probe's weight in W_E's top "
        "d_model/8 singular directions (chance: subspace_chance)."
    )
    st.download_button(
        "Download CSV",
        probe.to_csv(index=False),
        "probe.csv",
        "text/csv",
        key="experiments.probe_csv",
    )
