"""SQLite label store: round trip, upsert, queries, CSV export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from core.errors import CacheError
from core.label.store import LabelRecord, LabelStore, labels_path

#: The reading every record here is made under unless a test says otherwise.
READ = {"processing": "post", "projection": "standardized"}


def _rec(**kw: object) -> LabelRecord:
    base: dict[str, object] = dict(
        model="gpt2", weights_hash="abc123", matrix="mlp_in", layer=3, head=None, index=7,
        labeller="manual", interpretable=True, label="animals", score=None,
        tokens="dog, cat, horse", timestamp=1000.0, **READ,
    )  # fmt: skip
    base.update(kw)
    return LabelRecord(**base)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    recs = [
        _rec(),
        _rec(matrix="ov", head=2, index=0, interpretable=False, label=""),
        _rec(labeller="offline", score=2.5, label="animal"),
        _rec(control=True, labeller="offline", interpretable=None, score=-0.3),
    ]
    with LabelStore.in_cache(tmp_path) as store:
        assert store.put(recs) == 4
    assert labels_path(tmp_path).exists()
    with LabelStore.in_cache(tmp_path) as store:
        got = store.query()
        assert sorted(got, key=lambda r: r.key()) == sorted(recs, key=lambda r: r.key())
        r = store.get("gpt2", "abc123", "ov", 3, 2, 0, **READ)
        assert r is not None and r.head == 2 and r.interpretable is False
        assert store.get("gpt2", "abc123", "mlp_in", 3, None, 7, "offline", **READ).score == 2.5
        assert (
            store.get("gpt2", "abc123", "mlp_in", 3, None, 7, "offline", control=True, **READ)
            is not None
        )
        assert store.get("gpt2", "other", "mlp_in", 3, None, 7, **READ) is None


def test_upsert_and_delete(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put(_rec())
        store.put(_rec(label="mammals", interpretable=False, timestamp=2000.0))
        (r,) = store.query()
        assert r.label == "mammals" and r.interpretable is False and r.timestamp == 2000.0
        assert store.delete(r) and not store.delete(r)
        assert store.query() == []


def test_query_filters_and_search(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put([
            _rec(index=0, label="animals"),
            _rec(index=1, label="100% numbers", tokens="1, 2, 3"),
            _rec(index=2, label="", tokens="dog_house, x"),
            _rec(index=3, model="pythia", label="Animal names"),
        ])  # fmt: skip
        assert {r.index for r in store.query(search="animal")} == {0, 3}
        assert {r.index for r in store.query(search="ANIMAL", model="gpt2")} == {0}
        assert {r.index for r in store.query(search="%")} == {1}
        assert {r.index for r in store.query(search="_h")} == {2}
        assert {r.index for r in store.query(search="dog")} == {0, 2, 3}
        assert store.query(labeller="offline") == []


def test_csv_export(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put([_rec(), _rec(matrix="ov", head=1, interpretable=None, label='say "hi", ok')])
        out = tmp_path / "labels.csv"
        text = store.export_csv(out)
        assert out.read_text() == text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 2
        by = {r["matrix"]: r for r in rows}
        assert by["mlp_in"]["head"] == "" and by["mlp_in"]["interpretable"] == "1"
        assert by["ov"]["head"] == "1" and by["ov"]["interpretable"] == ""
        assert by["ov"]["label"] == 'say "hi", ok'
        assert set(rows[0]) >= {"model", "weights_hash", "matrix", "layer", "head", "index",
                                "labeller", "interpretable", "label", "score", "timestamp"}  # fmt: skip
        assert store.export_csv(matrix="ov").count("\n") == 2


def test_csv_export_neutralises_formulas(tmp_path: Path) -> None:
    evil = '=HYPERLINK("http://evil.example","x")'
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put([_rec(label=evil, tokens="+1, -2, @a", score=-0.5)])
        row = next(csv.DictReader(io.StringIO(store.export_csv())))
    # Text shown as typed, never run by a spreadsheet; numbers stay numbers.
    assert row["label"] == "'" + evil and row["tokens"] == "'+1, -2, @a"
    assert float(row["score"]) == -0.5


def test_bad_records_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        _rec(layer=-1)
    with pytest.raises(ValueError):
        _rec(labeller="")
    bad = tmp_path / "labels.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError, match="move it aside"):
        LabelStore(bad)


def test_llm_labels_are_keyed_by_model_and_old_rows_migrate(tmp_path: Path) -> None:
    import sqlite3

    from core.label.store import LLM_UNKNOWN, SCHEMA_VERSION, llm_labeller

    # A store written before LLM labellers carried their model: plain "llm" rows.
    with LabelStore.in_cache(tmp_path) as store:
        store.put([_rec(labeller="llm", label="old"), _rec(labeller="llm", index=8)])
    db = sqlite3.connect(labels_path(tmp_path))
    db.execute("PRAGMA user_version=0")
    db.execute("UPDATE labels SET labeller='llm'")
    db.commit()
    db.close()
    with LabelStore.in_cache(tmp_path) as store:
        old = store.query()
        assert {r.labeller for r in old} == {LLM_UNKNOWN} and len(old) == 2
        assert store.get("gpt2", "abc123", "mlp_in", 3, None, 7, LLM_UNKNOWN, **READ).label == "old"
        # Two models' verdicts on one direction are kept apart.
        store.put([_rec(labeller=llm_labeller("model-a"), label="a"),
                   _rec(labeller=llm_labeller("model-b"), label="b")])  # fmt: skip
        assert len(store.query(labeller="llm")) == 4  # every LLM's verdicts
        assert [r.label for r in store.query(labeller="llm:model-b")] == ["b"]
    db = sqlite3.connect(labels_path(tmp_path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


#: The columns of versions 1 and 2, written out here as they were (not taken from the
#: store module).
_OLD_COLUMNS = """
    model TEXT NOT NULL, weights_hash TEXT NOT NULL, matrix TEXT NOT NULL,
    layer INTEGER NOT NULL, head INTEGER NOT NULL, idx INTEGER NOT NULL,
    control INTEGER NOT NULL, labeller TEXT NOT NULL, interpretable INTEGER,
    label TEXT NOT NULL, score REAL, tokens TEXT NOT NULL, timestamp REAL NOT NULL,
"""
#: The version-1 layout.
_V1_TABLE = f"""
CREATE TABLE labels ({_OLD_COLUMNS}
    PRIMARY KEY (model, weights_hash, matrix, layer, head, idx, control, labeller)
)
"""


def test_version_1_store_migrates_in_place_to_top_ends(tmp_path: Path) -> None:
    import sqlite3

    from core.label.store import SCHEMA_VERSION

    path = labels_path(tmp_path)
    db = sqlite3.connect(path)
    db.execute(_V1_TABLE)
    rows = [
        ("gpt2", "abc", "ov", 1, 2, 0, 0, "offline", 1, "fire", 2.5, "a, b", 10.0),
        ("gpt2", "abc", "ov", 1, 2, 0, 0, "manual", None, "", None, "a, b", 11.0),
        ("gpt2", "abc", "mlp_in", 0, -1, 3, 1, "offline", 0, "", -0.5, "c", 12.0),
        ("gpt2", "abc", "mlp_in", 0, -1, 4, 0, "llm:m", 1, "=sum", None, "d", 13.0),
    ]
    db.executemany("INSERT INTO labels VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()

    with LabelStore(path) as store:
        got = store.query()
        assert len(got) == len(rows) and {r.end for r in got} == {"top"}
        # Version 1 predates the projection option: its rows were read raw, after folding.
        assert {(r.processing, r.projection) for r in got} == {("post", "raw")}
        by = {(r.matrix, r.index, r.labeller): r for r in got}
        off = by[("ov", 0, "offline")]
        assert (off.head, off.interpretable, off.label, off.score, off.timestamp) == (
            2,
            True,
            "fire",
            2.5,
            10.0,
        )
        assert by[("ov", 0, "manual")].interpretable is None
        ctl = by[("mlp_in", 3, "offline")]
        assert ctl.head is None and ctl.control and ctl.interpretable is False
        # The bottom end of a migrated direction is a new row beside its top end.
        raw = {"processing": "post", "projection": "raw"}
        store.put(_rec(matrix="ov", head=2, layer=1, index=0, weights_hash="abc",
                       labeller="offline", label="water", end="bottom", **raw))  # fmt: skip
        top = store.get("gpt2", "abc", "ov", 1, 2, 0, "offline", **raw)
        bottom = store.get("gpt2", "abc", "ov", 1, 2, 0, "offline", end="bottom", **raw)
        assert top is not None and top.label == "fire" and top.end == "top"
        assert bottom is not None and bottom.label == "water"
        assert store.get("gpt2", "abc", "ov", 1, 2, 0, "offline", **READ) is None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    cols = [r[1] for r in db.execute("PRAGMA table_info(labels)")]
    pk = [r[1] for r in sorted(db.execute("PRAGMA table_info(labels)"), key=lambda r: r[5]) if r[5]]
    db.close()
    assert {"end", "processing", "projection"} <= set(cols) and len(pk) == 11
    assert pk[-1] == "end" and pk[2:4] == ["processing", "projection"]
    # Opening again is a no-op: nothing copied twice, nothing lost.
    with LabelStore(path) as store:
        assert len(store.query()) == len(rows) + 1


#: The version-2 layout (``end``, no reading).
_V2_TABLE = f"""
CREATE TABLE labels ({_OLD_COLUMNS}
    "end" TEXT NOT NULL DEFAULT 'top',
    PRIMARY KEY (model, weights_hash, matrix, layer, head, idx, control, labeller, "end")
)
"""


def test_version_2_store_migrates_with_the_reading_of_its_time(tmp_path: Path) -> None:
    import datetime
    import sqlite3

    # When the projection option (default standardized) appeared, written out here.
    since = datetime.datetime(2026, 12, 4, 18, 8, 8, tzinfo=datetime.UTC).timestamp()
    path = labels_path(tmp_path)
    db = sqlite3.connect(path)
    db.execute(_V2_TABLE)
    rows = [
        ("gpt2", "abc", "ov", 1, 2, 0, 0, "manual", 1, "before", None, "a", since - 60, "top"),
        ("gpt2", "abc", "ov", 1, 2, 0, 0, "manual", 0, "after", None, "b", since + 60, "bottom"),
    ]
    db.executemany("INSERT INTO labels VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    with LabelStore(path) as store:
        got = {r.label: r for r in store.query()}
        assert set(got) == {"before", "after"}
        assert (got["before"].processing, got["before"].projection) == ("post", "raw")
        assert (got["after"].processing, got["after"].projection) == ("post", "standardized")
        assert got["after"].end == "bottom" and got["after"].interpretable is False


def test_readings_are_kept_apart(tmp_path: Path) -> None:
    from core.label.store import reading
    from core.settings import Settings

    raw = reading(Settings(processing="raw", projection="raw"))
    assert raw == {"processing": "raw", "projection": "raw"}
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put([_rec(label="animals"), _rec(label="numbers", **raw),
                   _rec(label="verbs", processing="post", projection="centred")])  # fmt: skip
        assert len(store.query()) == 3
        assert [r.label for r in store.query(**raw)] == ["numbers"]
        assert [r.label for r in store.query(projection="centred")] == ["verbs"]
        assert [r.label for r in store.query(processing="post")] == ["verbs", "animals"]
        assert store.get("gpt2", "abc123", "mlp_in", 3, None, 7, **READ).label == "animals"
        assert store.get("gpt2", "abc123", "mlp_in", 3, None, 7, **raw).label == "numbers"
        assert store.delete(_rec(**raw))
        assert store.get("gpt2", "abc123", "mlp_in", 3, None, 7, **raw) is None
        rows = list(csv.DictReader(io.StringIO(store.export_csv())))
        assert {(r["processing"], r["projection"]) for r in rows} == {
            ("post", "standardized"),
            ("post", "centred"),
        }
    with pytest.raises(ValueError, match="projection"):
        _rec(projection="logit")
    with pytest.raises(ValueError, match="processing"):
        _rec(processing="folded")
    with pytest.raises(TypeError):
        LabelRecord("gpt2", "abc", "ov", 0, 0, 0, "manual")  # type: ignore[call-arg]


def test_ends_are_kept_apart(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put([_rec(label="animals"), _rec(label="numbers", end="bottom")])
        assert [r.end for r in store.query()] == ["top", "bottom"]
        assert [r.label for r in store.query(end="bottom")] == ["numbers"]
        assert store.get("gpt2", "abc123", "mlp_in", 3, None, 7, **READ).label == "animals"
        assert store.delete(_rec(end="bottom"))
        assert [r.end for r in store.query()] == ["top"]
        rows = list(csv.DictReader(io.StringIO(store.export_csv())))
        assert rows[0]["end"] == "top"
    with pytest.raises(ValueError, match="end"):
        _rec(end="middle")
