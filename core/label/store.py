"""Direction labels on disk: one SQLite file, ``<cache_dir>/labels.sqlite``.

A label is keyed by ``(model, weights_hash, processing, projection, matrix, layer,
head, index, control, labeller, end)``: manual labels (``labeller="manual"``) sit beside
the offline and LLM labellers' verdicts for the same direction, random-control
directions beside the real ones, and each direction's two ends beside each other.
``end`` is ``top`` (the tokens with the largest projections of the oriented direction)
or ``bottom`` (the most negative ones, which are the top end of the negated direction):
the sign rule (:func:`core.svd.project.token_signs`) only decides which end is called
"top", so both are labelled. ``processing`` and ``projection``
(:class:`core.settings.Settings`) are the reading the verdict was made under: folding
the normalisation changes the singular vectors, and the projection changes a
direction's tokens and which end is its top, so a verdict is shown only under the
reading it was made in. Writes are upserts, so re-labelling replaces; the file can be
exported as CSV.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO, TypedDict

from core.errors import CacheError
from core.settings import ENDS, PROJECTIONS, Settings

LABELS_FILE = "labels.sqlite"
MANUAL = "manual"
#: LLM verdicts are stored as ``llm:<model>``; rows from before the model was part of
#: the name (plain ``llm``) are renamed to this by the store's version-1 migration.
LLM_UNKNOWN = "llm:unknown model"
#: ``PRAGMA user_version`` of the current layout (1: LLM labellers carry their model;
#: 2: the ``end`` column, part of the key; older rows become ``top``; 3: ``processing``
#: and ``projection``, part of the key; see :meth:`LabelStore._migrate` for older rows).
SCHEMA_VERSION = 3
#: When the projection option appeared (2026-12-04 18:08:08 UTC, seconds since the
#: epoch): a row last written before it was read ``raw``, the only reading then.
PROJECTION_SINCE = 1796407688.0
_NO_HEAD = -1  # SQLite treats NULLs as distinct in keys, so "no head" is stored as -1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    model TEXT NOT NULL,
    weights_hash TEXT NOT NULL,
    matrix TEXT NOT NULL,
    layer INTEGER NOT NULL,
    head INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    control INTEGER NOT NULL,
    labeller TEXT NOT NULL,
    interpretable INTEGER,
    label TEXT NOT NULL,
    score REAL,
    tokens TEXT NOT NULL,
    timestamp REAL NOT NULL,
    "end" TEXT NOT NULL DEFAULT 'top',
    processing TEXT NOT NULL,
    projection TEXT NOT NULL,
    PRIMARY KEY (model, weights_hash, processing, projection, matrix, layer, head, idx,
                 control, labeller, "end")
)
"""
#: The columns of version 1 (no ``end``) and 2 (no reading), copied over by migrations.
_COLS_V1 = (
    "model, weights_hash, matrix, layer, head, idx, control, labeller, "
    "interpretable, label, score, tokens, timestamp"
)
_COLS_V2 = _COLS_V1 + ', "end"'
_COLS = _COLS_V2 + ", processing, projection"
_KEY_WHERE = (
    "model=? AND weights_hash=? AND processing=? AND projection=? AND matrix=? AND layer=? "
    'AND head=? AND idx=? AND control=? AND labeller=? AND "end"=?'
)


@dataclass(frozen=True)
class LabelRecord:
    """One labeller's verdict on one direction.

    Attributes:
        model: the model name (``ModelMeta.name``).
        weights_hash: the weights hash (``ModelMeta.weights_hash``).
        matrix: matrix kind (``ov``, ``mlp_in``, ...).
        layer: block index.
        head: head for per-head kinds, else ``None``.
        index: singular-vector index.
        labeller: ``manual``, ``offline`` or ``llm:<model>`` (:func:`llm_labeller`).
        interpretable: the yes/no verdict (``None``: not decided).
        label: the label text ("" if none).
        score: the labeller's score (offline: z-score), if any.
        tokens: the top tokens shown to the labeller, comma-separated.
        control: whether this is a random-control direction.
        end: which end of the direction the verdict is on (:data:`ENDS`): ``top``, the
            tokens with the largest projections, or ``bottom``, the most negative ones.
        processing: the reading's ``Settings.processing`` (``post`` or ``raw``); keyword only.
        projection: the reading's ``Settings.projection``; keyword only.
        timestamp: seconds since the epoch of the last write.
    """

    model: str
    weights_hash: str
    matrix: str
    layer: int
    head: int | None
    index: int
    labeller: str
    interpretable: bool | None = None
    label: str = ""
    score: float | None = None
    tokens: str = ""
    control: bool = False
    end: str = "top"
    # No defaults: a writer that forgot the reading would file its verdict under another.
    processing: str = field(kw_only=True)
    projection: str = field(kw_only=True)
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.layer < 0 or self.index < 0:
            raise ValueError("layer and index must be non-negative")
        if not self.labeller:
            raise ValueError("labeller must be non-empty")
        if self.end not in ENDS:
            raise ValueError(f"end must be one of {', '.join(ENDS)}, not {self.end!r}")
        if self.processing not in ("post", "raw"):
            raise ValueError(f"processing must be post or raw, not {self.processing!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(
                f"projection must be one of {', '.join(PROJECTIONS)}, not {self.projection!r}"
            )

    def key(self) -> tuple[Any, ...]:
        h = _NO_HEAD if self.head is None else self.head
        return (self.model, self.weights_hash, self.processing, self.projection, self.matrix,
                self.layer, h, self.index, int(self.control), self.labeller, self.end)  # fmt: skip


class Reading(TypedDict):
    """The reading part of a label's key (:func:`reading`)."""

    processing: str
    projection: str


def reading(settings: Settings) -> Reading:
    """The reading part of a label's key for an analysis made under ``settings``, as
    keyword arguments of :class:`LabelRecord`, :meth:`LabelStore.get` and
    :meth:`LabelStore.query`.
    """
    return Reading(processing=settings.processing, projection=settings.projection)


def labels_path(cache_dir: Path) -> Path:
    """Where the label store of a cache directory lives."""
    return Path(cache_dir) / LABELS_FILE


def _from_row(row: Sequence[Any]) -> LabelRecord:
    (model, wh, matrix, layer, head, idx, control, labeller, interp, label, score, toks, ts, end,
     processing, projection) = row  # fmt: skip
    return LabelRecord(
        model=model,
        weights_hash=wh,
        matrix=matrix,
        layer=int(layer),
        head=None if head == _NO_HEAD else int(head),
        index=int(idx),
        labeller=labeller,
        interpretable=None if interp is None else bool(interp),
        label=label,
        score=score,
        tokens=toks,
        control=bool(control),
        end=end,
        processing=processing,
        projection=projection,
        timestamp=float(ts),
    )


def llm_labeller(model: str) -> str:
    """The labeller name of an LLM's verdicts: ``llm:<model>``."""
    return f"llm:{model.strip() or 'unknown model'}"


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """``value`` for a CSV cell: text that a spreadsheet would run as a formula (a label
    or token such as ``=HYPERLINK(...)``) gets a leading apostrophe; numbers pass as they
    are.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class LabelStore:
    """The SQLite label store; open one per thread (connections are not shared)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # One opener at a time creates or migrates the table (another process may be
            # opening a version-1 store at the same moment).
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(_SCHEMA.format(table="labels"))
            self._migrate()
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"The label store {self.path} cannot be opened ({exc}); move it aside and retry."
            ) from exc

    def _migrate(self) -> None:
        """Bring an older store to :data:`SCHEMA_VERSION`, keeping every row readable."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version < 1:
            # Plain "llm" rows predate the model in the name; a row under the new name
            # for the same direction wins (it is the newer verdict).
            self._db.execute(
                "UPDATE OR IGNORE labels SET labeller=? WHERE labeller='llm'", (LLM_UNKNOWN,)
            )
            self._db.execute("DELETE FROM labels WHERE labeller='llm'")
        cols = self._columns()
        # The primary key grew with ``end`` (v2) and the reading (v3), which SQLite cannot
        # alter: copy every row into the new layout. Version 1 labelled the top end only,
        # before the projection option existed (so ``raw``); a version-2 row is ``raw``
        # when last written before that option appeared, else the default
        # ``standardized``. Processing was never recorded: ``post``, the default of the
        # CLI and the dashboard throughout.
        if "end" not in cols:
            select = f"{_COLS_V1}, 'top', 'post', 'raw'"
        elif "projection" not in cols:
            select = (
                f"{_COLS_V2}, 'post', "
                f"CASE WHEN timestamp < {PROJECTION_SINCE} THEN 'raw' ELSE 'standardized' END"
            )
        else:
            select = ""
        if select:
            self._db.execute(_SCHEMA.format(table="labels_new"))
            self._db.execute(f"INSERT INTO labels_new ({_COLS}) SELECT {select} FROM labels")
            self._db.execute("DROP TABLE labels")
            self._db.execute("ALTER TABLE labels_new RENAME TO labels")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(labels)")}

    @classmethod
    def in_cache(cls, cache_dir: Path) -> LabelStore:
        """The store at ``<cache_dir>/labels.sqlite``."""
        return cls(labels_path(cache_dir))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, records: LabelRecord | Iterable[LabelRecord]) -> int:
        """Insert or replace records; returns how many were written."""
        recs = [records] if isinstance(records, LabelRecord) else list(records)
        rows = [
            (
                r.model,
                r.weights_hash,
                r.matrix,
                r.layer,
                _NO_HEAD if r.head is None else r.head,
                r.index,
                int(r.control),
                r.labeller,
                None if r.interpretable is None else int(r.interpretable),
                r.label,
                r.score,
                r.tokens,
                r.timestamp,
                r.end,
                r.processing,
                r.projection,
            )  # fmt: skip
            for r in recs
        ]
        marks = ", ".join("?" * len(_COLS.split(",")))
        with self._db:
            self._db.executemany(f"INSERT OR REPLACE INTO labels ({_COLS}) VALUES ({marks})", rows)
        return len(rows)

    def get(
        self,
        model: str,
        weights_hash: str,
        matrix: str,
        layer: int,
        head: int | None,
        index: int,
        labeller: str = MANUAL,
        control: bool = False,
        end: str = "top",
        *,
        processing: str,
        projection: str,
    ) -> LabelRecord | None:
        """The record under one key, or ``None`` (the reading: :func:`reading`)."""
        h = _NO_HEAD if head is None else head
        cur = self._db.execute(
            f"SELECT {_COLS} FROM labels WHERE {_KEY_WHERE}",
            (
                model,
                weights_hash,
                processing,
                projection,
                matrix,
                layer,
                h,
                index,
                int(control),
                labeller,
                end,
            ),  # fmt: skip
        )
        row = cur.fetchone()
        return None if row is None else _from_row(row)

    def delete(self, record: LabelRecord) -> bool:
        """Remove the record with ``record``'s key; whether one was there."""
        with self._db:
            cur = self._db.execute(f"DELETE FROM labels WHERE {_KEY_WHERE}", record.key())
        return cur.rowcount > 0

    def query(
        self,
        model: str | None = None,
        weights_hash: str | None = None,
        matrix: str | None = None,
        labeller: str | None = None,
        control: bool | None = None,
        search: str | None = None,
        end: str | None = None,
        processing: str | None = None,
        projection: str | None = None,
    ) -> list[LabelRecord]:
        """Records matching every given filter; ``search`` matches label or tokens (substring,
        case-insensitive); ``end``: one end's verdicts only (default both); ``processing``
        and ``projection``: one reading's (:func:`reading`; default every reading).
        """
        where: list[str] = []
        args: list[Any] = []
        for col, val in (("model", model), ("weights_hash", weights_hash),
                         ("processing", processing), ("projection", projection),
                         ("matrix", matrix), ("labeller", labeller)):  # fmt: skip
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        if labeller == "llm":  # every LLM's verdicts
            where[-1] = "(labeller=? OR labeller LIKE 'llm:%')"
        if control is not None:
            where.append("control=?")
            args.append(int(control))
        if end is not None:
            where.append('"end"=?')
            args.append(end)
        if search:
            where.append("(label LIKE ? ESCAPE '\\' OR tokens LIKE ? ESCAPE '\\')")
            pat = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pat, pat]
        sql = f"SELECT {_COLS} FROM labels"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += (
            " ORDER BY model, processing, projection, matrix, control, layer, head, idx, "
            'labeller, "end" DESC'
        )
        return [_from_row(r) for r in self._db.execute(sql, args)]

    def export_csv(self, out: Path | TextIO | None = None, **filters: Any) -> str:
        """Write the (filtered) records as CSV to ``out``; returns the CSV text."""
        buf = io.StringIO()
        names = [f.name for f in fields(LabelRecord)]
        w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        w.writeheader()
        for r in self.query(**filters):
            row = asdict(r)
            row["head"] = "" if r.head is None else r.head
            row["interpretable"] = "" if r.interpretable is None else int(r.interpretable)
            row["score"] = "" if r.score is None else r.score
            row["control"] = int(r.control)
            w.writerow({k: _cell(v) for k, v in row.items()})
        text = buf.getvalue()
        if isinstance(out, (str, Path)):
            Path(out).write_text(text, encoding="utf-8")
        elif out is not None:
            out.write(text)
        return text
