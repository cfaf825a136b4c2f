"""label-eval: the GPT-3 label-file format, the reference decision, AUC, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from core.cli.main import main
from core.errors import SpecError
from core.label.evaluate import (
    evaluate_scores,
    offline_scores,
    read_label_file,
    reference_decision,
    roc_auc,
    split_test_string,
)

NO = "these words have no shared semantic meaning."
THEMED = [
    ("dog, cat, horse, cow, sheep, lion, tiger, wolf, bear, rabbit, mouse, goat, pig, deer, fox",
     "most of these words are animals.", "yes"),
    ("red, blue, green, yellow, purple, orange, pink, brown, white, black, grey, ulin, ptr, "
     "violet, cyan", "most of these words are colours.", "yes"),
    ("bread, cheese, soup, rice, pasta, apple, banana, meat, butter, cake, salad, pizza, egg, "
     "milk, sugar", "most of these words are foods.", "yes"),
    ("Monday, Tuesday, Friday, Sunday, weekend, Saturday, week, Thursday, Wednesday, ogg, day, "
     "night, Fri, Mon, tomorrow", "most of these words are days.", "yes"),
    ("car, truck, bus, train, bike, plane, boat, ship, taxi, van, tram, jet, ferry, subway, "
     "motorcycle", "most of these words are vehicles.", "yes"),
    ("happy, sad, angry, afraid, joy, fear, love, hate, grief, calm, anxious, proud, shame, "
     "envy, hope", "most of these words are emotions.", "yes"),
]  # fmt: skip
JUNK = [
    ("ership, ouch, Sov, anth, ivic, 229, rane, ';, oglu, Jr, ailing, eeks, ulum, pheus, osp",
     NO, "yes"),
    ("whichever, Bren, iox, enity, ascus, REL, unt, 36, portion, oka, ocl, Rocky, Coll, "
     "idences, reens", NO, "yes"),
    ("Nope, strap, ayer, uddled, Kem, dsl, orp, Ox, aple, ourke, ellar, Stamp, iltr, ebin, "
     "apons", NO, "no"),
    ("ATED, iny, maker, ester, obe, onial, Dian, Pet, gie, urt, ERY, okes, Spe, iph, dain",
     "most of these words are suffixes.", "no"),
    ("zan, velt, edin, steen, eur, ifa, hin, doms, anie, CTV, cow, arl, Row, anto, kamp", NO,
     "yes"),
    ("OH, H, Mar, May, Mar, U, X, K, Man, V, 69, ux, 23, oh, 19", NO, "yes"),
]  # fmt: skip


def write_file(path: Path, rows: list[tuple[str, str, str]], per_layer: int = 4) -> Path:
    data: dict[str, dict[str, dict[str, str]]] = {}
    for i, (ts, resp, ver) in enumerate(rows):
        layer = data.setdefault(f"layer_{i // per_layer}", {})
        layer[f"direction_{i % per_layer}"] = {
            "test_string": ts, "response": resp, "verifier_response": ver,
        }  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def test_reading_and_reference_decision(tmp_path: Path) -> None:
    sets = read_label_file(write_file(tmp_path / "f.json", THEMED[:3] + JUNK[:3]))
    assert len(sets) == 6 and [(s.layer, s.index) for s in sets][:5] == [
        (0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]  # fmt: skip
    assert sets[0].tokens[:3] == ("dog", "cat", "horse") and len(sets[0].tokens) == 15
    assert [s.interpretable for s in sets] == [True] * 3 + [False] * 3
    assert not reference_decision("most of these words are suffixes.", "no")
    assert not reference_decision(NO, "yes")
    assert reference_decision("most of these words relate to a website.", " Yes")
    assert split_test_string("a, ',\", b") == ("a", "',\"", "b")


def test_layer_and_direction_keys_sort_numerically(tmp_path: Path) -> None:
    p = write_file(tmp_path / "f.json", (THEMED + JUNK)[:12], per_layer=11)
    sets = read_label_file(p)
    assert [(s.layer, s.index) for s in sets][-3:] == [(0, 9), (0, 10), (1, 0)]


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        read_label_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(SpecError, match="not JSON"):
        read_label_file(tmp_path / "bad.json")
    (tmp_path / "shape.json").write_text(json.dumps({"layer_0": {"direction_0": {"x": 1}}}))
    with pytest.raises(SpecError, match="label-set format"):
        read_label_file(tmp_path / "shape.json")


def test_auc_matches_sklearn() -> None:
    import random

    rng = random.Random(0)
    for _ in range(20):
        y = [rng.random() < 0.5 for _ in range(40)]
        s = [round(rng.random(), 1) for _ in range(40)]  # ties on purpose
        if len(set(y)) < 2:
            continue
        assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert math.isnan(roc_auc([1, 2], [True, True]))  # undefined, not a coin flip


def test_cli_label_eval(capsys, tmp_path: Path) -> None:
    a = write_file(tmp_path / "a.json", THEMED[:4] + JUNK[:4])
    b = write_file(tmp_path / "b.json", THEMED[2:] + JUNK[2:])
    assert main(["label-eval", "--data", str(a), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["n"] == 8 and one["threshold"] == 2.0
    assert one["auc"] >= 0.9 and one["accuracy"] >= 0.75
    assert set(one["baselines"]) == {"alpha_fraction", "word_fraction", "word_frequency"}
    assert one["majority_accuracy"] == 0.5
    assert main(["label-eval", "--data", str(a), str(b), "--json"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["n"] == 16 and set(two["files"]) == {str(a), str(b)}
    assert two["files"][str(a)]["auc"] == one["auc"]
    assert {"n", "auc", "accuracy", "threshold"} <= set(two["files"][str(b)])
    assert main(["label-eval", "--data", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


FORM = [
    ("6, 5, 35, 13, 625, 7, 55, 42, seventeen, 10, 1, 15, 14, 620, 8",
     "most of these words are numbers.", "yes"),
    ('., ;, .",", .(, .<, !,, !., .[, .], !, .</, ,, .\'\'., .\', ."',
     "most of these words are punctuation marks.", "yes"),
    ("of, OF, Of, of, with, With, WITH, to, TO, in, IN, on, ON, at, AT",
     "most of these words are prepositions.", "yes"),
]  # fmt: skip


def test_offline_scores_rank_coherent_sets_above_junk(tmp_path: Path) -> None:
    from wordfreq import zipf_frequency

    from core.label.offline import OfflineLabeller, OfflineParams, load_embedder

    emb = load_embedder("cpu")
    sets = read_label_file(write_file(tmp_path / "f.json", THEMED + FORM + JUNK))
    lab, scores = offline_scores(
        sets, lambda vocab: OfflineLabeller(emb, vocab, OfflineParams(null_sets=100))
    )
    res = evaluate_scores(sets, scores, lab.params.threshold_z)
    ref = [s.interpretable for s in sets]
    z = [r.z for r in scores]
    assert res.auc == pytest.approx(roc_auc_score(ref, z))
    junk_best = max(z[len(THEMED) + len(FORM) :])
    assert min(z[: len(THEMED)]) > junk_best  # every semantic theme above every junk set
    assert sum(v > junk_best for v in z[len(THEMED) : len(THEMED) + len(FORM)]) >= 2
    freq = [sum(zipf_frequency(t, "en") for t in s.tokens) / len(s.tokens) for s in sets]
    assert res.baselines["word_frequency"] == pytest.approx(roc_auc_score(ref, freq), abs=1e-9)
    base = sum(ref) / len(ref)
    assert res.majority_accuracy == pytest.approx(max(base, 1 - base))
