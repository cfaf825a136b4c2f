"""``python -m core lens``: its JSON (checked against a plain HF forward pass) and its
refusals."""

from __future__ import annotations

import json

import pytest
import torch

from core.cli.main import main

PROMPT = "the fire burned with hot"


def test_lens_json_per_layer_and_position(capsys, checkpoints, tmp_path):
    from transformers import AutoModelForCausalLM

    path = checkpoints["gpt2"]
    code = main(
        ["lens", "--model", str(path), "--cache-dir", str(tmp_path), "--device", "cpu"]
        + ["--prompt", PROMPT, "--top", "3", "--directions", "2", "--k", "4", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
    assert res["layers"] == ["embed", "L0", "L1"]
    n = len(res["tokens"])
    assert [p["position"] for p in res["positions"]] == list(range(n))
    for p, nxt in zip(res["positions"], res["tokens"][1:] + [None]):
        assert p["target"] == nxt
        assert [r["layer"] for r in p["layers"]] == res["layers"]
        for r in p["layers"]:
            probs = [v for _, v in r["top"]]
            assert len(probs) == 3 and probs == sorted(probs, reverse=True)
            assert (r["target_rank"] is None) == (nxt is None)
        for r in p["layers"][1:]:
            for side in ("read", "write"):
                acts = [abs(x["activation"]) for x in r[side]]
                assert len(acts) == 2 and acts == sorted(acts, reverse=True)
                assert all(len(x["tokens"]) == 4 and x["side"] == side for x in r[side])
    # The last layer is the model's own next-token distribution.
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    ids = list(tok(PROMPT)["input_ids"])
    if len(ids) + 1 == n:  # the loaded tokenizer prepends BOS (TransformerLens's default)
        ids = [tok.bos_token_id, *ids]
    assert [tok.decode([i]) for i in ids] == res["tokens"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    for p in res["positions"]:
        last = p["layers"][-1]
        top = probs[p["position"]].topk(3)
        assert [v for _, v in last["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)
        if p["position"] + 1 < n:
            want = float(probs[p["position"], ids[p["position"] + 1]])
            assert last["target_prob"] == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", ""], "--prompt is empty"),
        (["--prompt", "fire " * 200], "The prompt is"),
        (["--prompt", "fire", "--top", "0"], "--top must be"),
        (["--prompt", "fire", "--directions", "-1"], "--directions must be"),
        (["--prompt", "fire", "--target", ""], "target is empty"),
    ],
)
def test_bad_arguments_get_one_sentence(capsys, checkpoints, tmp_path, extra, message):
    code = main(["lens", "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path), *extra])
    _, err = capsys.readouterr()
    assert code == 2 and message in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
