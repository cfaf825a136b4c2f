"""The Streamlit dashboard: ``streamlit run dashboard/app.py`` (see dashboard/app.py)."""
