"""grid page (work in progress)."""

import _root  # noqa: F401
import streamlit as st

from dashboard import components

sel, a = components.setup()
st.title("grid")
st.write(sel.label())
