"""overview page (work in progress)."""

import _root  # noqa: F401
import streamlit as st

from dashboard import components

sel, a = components.setup()
st.title("overview")
st.write(sel.label())
