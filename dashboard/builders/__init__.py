"""Pure builders: Analysis/Direction data in, ``pd.DataFrame`` or ``alt.Chart`` out.

No Streamlit here; each is tested on a tiny model without a running app. How pages use
them: dashboard/registry.py.
"""
