"""Home page: what the model is, what is cached, and how to read the other pages."""

import streamlit as st
from core.model import embedded
from dashboard import components, config, loaders
from dashboard.builders import overview

st.caption(
    "Singular value decompositions of every weight matrix, read in token space through "
    "the unembedding (Millidge & Black, 2022)."
)
sel, a = components.setup(require_analysis=False)

_entry = embedded.lookup(sel.model) or embedded.by_directory(sel.model)
if _entry is not None:
    st.info(f"**{_entry.name}**: {_entry.summary}")

if a is not None:
    left, right = st.columns([1, 1])
    with left:
        st.subheader("Model")
        facts = loaders.cached_table("facts", sel, overview.model_facts)
        st.dataframe(
            facts,
            hide_index=True,
            width="stretch",
            height=35 * (len(facts) + 1) + 3,
            key="overview.facts",
            column_config={"fact": st.column_config.TextColumn(width="small")},
        )
    with right:
        st.subheader("Matrices in the cache entry")
        st.dataframe(
            loaders.cached_table("kinds", sel, overview.kinds_frame),
            hide_index=True,
            width="stretch",
            key="overview.kinds",
            column_config={
                "largest σ": st.column_config.NumberColumn(format="%.4g"),
                "degenerate": st.column_config.NumberColumn(
                    help="near-degenerate singular values (vectors defined up to rotation)"
                ),
            },
        )
        st.subheader("Cache")
        st.caption(f"Cache folder: `{config.cache_dir()}`")
        if a.fill is not None and a.filling:
            st.info(
                f"Every page works now; the directions past the first few of each component "
                f"are being projected in the background ({a.fill.generation} of "
                f"{a.fill.total} matrix kinds done), and the entry is written when they are."
            )
        cached = overview.cache_frame(config.cache_dir())
        if cached.empty:
            st.info("The cache is empty; opening a model builds its entry.")
        else:
            st.dataframe(cached, hide_index=True, width="stretch", key="overview.cache")

st.subheader("How to read the pages")
st.markdown(
    """
* **Spectra**: the singular values of the selected matrix (log or linear scale), next to a
  random Gaussian matrix of the same shape. A trained matrix whose spectrum falls off much
  faster than the control's has a few dominant directions worth reading. Red rings mark
  near-degenerate values: their singular vectors are only defined up to a rotation within
  the degenerate group, so read them together.
* **Cluster grid**: the post's table. Each column is one singular direction (ordered by
  singular value, shown in the header as `σ`), each row a token; the tokens are those whose
  unembedding has the largest (positive end, blue) or most negative (negative end, red)
  dot product with that direction. A good direction reads as one theme down a column.
  Compare with the random control: its columns should look like noise.
* **Atlas**: one row per OV head and MLP matrix with the top tokens of its first directions,
  its largest singular value and effective rank; filter by a token and click a row to open
  it in the grid.
* **Prompt**: type a prompt to see, for every layer and position, what the residual stream
  predicts through the final norm and the unembedding (the logit lens; colour: the next
  token's rank or probability), and which directions of a layer's heads and MLP read and
  write most at a position; click one to open it in the grid.
* **Processing**: *post* folds the normalisation's scale (and LayerNorm's centring) into the
  matrices that read the residual stream, as in the post; *raw* uses the stored weights.
* Use the sidebar to pick the model, matrix kind, layer and head; the URL keeps the view,
  so you can share or reload it.
"""
)
