"""The feedback store: corrections from users, in a SQLite file, ready to become training rows.

* WAL journal and ``synchronous=FULL``: a write acknowledged by :meth:`FeedbackStore.add` has been
  committed and synced, so it survives the process being killed (and a power cut).
* Safe under concurrent writers, threads or processes: each thread has its own connection, writes
  take the write lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout`` for it.
* Rows are only ever inserted; nothing here updates or deletes them.

The same database file holds the predictions log (see :mod:`patentclf.monitoring`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .labels import CODES

BUSY_TIMEOUT_S = 30.0

FEEDBACK_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,               -- ISO 8601 UTC
    prediction_id TEXT,               -- the prediction it corrects, when known
    text TEXT NOT NULL,               -- the patent text (the user chose to send feedback on it)
    label TEXT NOT NULL,              -- the correct section letter
    predicted_label TEXT,             -- what the model said, when known
    agreed INTEGER,                   -- 1 / 0, NULL when no prediction is known
    comment TEXT,
    model_version TEXT,
    source TEXT NOT NULL DEFAULT 'api'
);
CREATE INDEX IF NOT EXISTS feedback_prediction_id ON feedback (prediction_id);
"""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, full sync, waiting on locks."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class Database:
    """One SQLite file, one connection per thread."""

    def __init__(self, path: str | Path, schema: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.write() as conn:
            # One statement at a time: executescript() would commit on its own.
            for statement in filter(str.strip, schema.split(";")):
                conn.execute(statement)

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


@dataclass
class Feedback:
    text: str
    label: str
    prediction_id: str | None = None
    predicted_label: str | None = None
    comment: str | None = None
    model_version: str | None = None
    source: str = "api"

    @property
    def agreed(self) -> bool | None:
        return None if self.predicted_label is None else self.label == self.predicted_label


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.db = Database(path, FEEDBACK_SCHEMA)
        self.path = self.db.path

    def add(self, item: Feedback) -> int:
        """Store one correction; returns its id once it is committed."""
        if item.label not in CODES:
            raise ValueError(f"unknown section {item.label!r}")
        if not item.text.strip():
            raise ValueError("feedback needs the text")
        agreed = None if item.agreed is None else int(item.agreed)
        with self.db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO feedback (time, prediction_id, text, label, predicted_label, agreed, comment, model_version, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (utc_now(), item.prediction_id, item.text, item.label, item.predicted_label, agreed, item.comment, item.model_version, item.source),
            )
            return int(cursor.lastrowid)

    def get(self, feedback_id: int) -> dict | None:
        row = self.db.connection().execute("SELECT * FROM feedback WHERE id = ?", (feedback_id,)).fetchone()
        return dict(row) if row else None

    def rows(self) -> list[dict]:
        return [dict(r) for r in self.db.connection().execute("SELECT * FROM feedback ORDER BY id")]

    def count(self) -> int:
        return int(self.db.connection().execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def summary(self) -> dict:
        row = self.db.connection().execute(
            "SELECT COUNT(*), COALESCE(SUM(agreed = 1), 0), COALESCE(SUM(agreed = 0), 0) FROM feedback"
        ).fetchone()
        total, agreed, disagreed = (int(v) for v in row)
        judged = agreed + disagreed
        return {"total": total, "agreed": agreed, "disagreed": disagreed, "agreement_rate": agreed / judged if judged else None}


def training_rows(store: FeedbackStore, *, disagreed_only: bool = False) -> list[dict]:
    """Feedback as rows that ``patentclf train --extra-data`` reads: text, label (letter), source, time."""
    rows = []
    for row in store.rows():
        if disagreed_only and row["agreed"] != 0:
            continue
        rows.append({"text": row["text"], "label": row["label"], "source": f"feedback:{row['id']}", "time": row["time"]})
    return rows


def export_jsonl(db_path: str | Path, output: str | Path, *, disagreed_only: bool = False) -> int:
    """Write the training rows to ``output`` (JSONL, replaced atomically); returns how many."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no feedback database")
    rows = training_rows(FeedbackStore(db_path), disagreed_only=disagreed_only)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(partial, output)
    return len(rows)
