"""Self-retrieval floors on the embedded demo model (skipped until it is in the tree)."""

from __future__ import annotations

import pytest

from core.settings import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="the demo model is not built yet"
)


def test_token_method_beats_pinv_on_the_demo_model(tmp_path) -> None:
    from core.analysis import open_analysis
    from core.search.engine import build_index
    from core.search.retrieval import self_retrieval
    from core.settings import Settings

    kinds = ("ov", "mlp_in", "mlp_out")
    # The figures below are the post's reading (raw); under the standardized default pinv
    # comes close to token (recall@1 0.92 against 0.997 on this sample).
    settings = Settings(
        model="default", cache_dir=tmp_path, device="cpu", kinds=kinds, projection="raw"
    )
    a = open_analysis(settings)
    index = build_index(a)
    s = {r.method: r for r in self_retrieval(index, k=3, sample=600, seed=1)}
    # Measured on the 55-minute demo model (all 3072 directions): token 0.95, pinv 0.53.
    assert s["token"].recall_1 >= 0.8
    assert s["token"].recall_10 >= 0.95
    assert s["token"].recall_1 >= s["pinv"].recall_1 + 0.2
    assert s["ridge"].mean_cosine >= s["pinv"].mean_cosine
    assert s["embed"].recall_10 < s["pinv"].recall_10
