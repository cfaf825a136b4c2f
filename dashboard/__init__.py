"""The Streamlit dashboard: ``streamlit run dashboard/app.py``; its pages, and how to
write one, are in dashboard/registry.py."""
