"""SVD interpretability engine: decompositions of transformer weights projected to tokens.

Pure computation and I/O; never imports streamlit. Stages: loading, weights,
decompose, project, store, analysis (the engine), search, edit, label, bench.
"""
