"""The storage layer on both engines: a SQLite file and a real PostgreSQL server (tests/pg_server.py).

Schema versions, migrations of files from before versions, concurrent writers, faults at COMMIT (a
full disk, a lost connection, a transaction left open) and locks, the feedback store's codes and
reviews, and the predictions log's rolled-up counts and retention.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import re
import resource
import signal
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from patentclf.corpus.data import load_split
from patentclf.corpus.labels import CODES
from patentclf.store.database import SCHEMA_VERSION, Store, alembic_config, metadata
from patentclf.store.feedback import MAX_CODES, Feedback, FeedbackStore, ReviewConflict, export_jsonl, feedback_code
from patentclf.store.monitoring import LoggedPrediction, PredictionLog, confidence_bin, new_log_row


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    """A SQLite path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres_url")


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# --- schema versions ------------------------------------------------------------------------------


def test_migrations_build_exactly_the_tables_the_code_uses(database):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = Store(database)
    assert store.version() == head_revision() == SCHEMA_VERSION
    with store.read() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, prediction_id TEXT, text TEXT NOT NULL,
    label TEXT NOT NULL, predicted_label TEXT, agreed INTEGER, comment TEXT, model_version TEXT,
    source TEXT NOT NULL DEFAULT 'api'
);
CREATE INDEX IF NOT EXISTS feedback_prediction_id ON feedback (prediction_id);
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY, time TEXT NOT NULL, model_version TEXT NOT NULL, label TEXT NOT NULL,
    confidence REAL NOT NULL, latency_ms REAL NOT NULL, needs_review INTEGER NOT NULL, text TEXT
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
"""


def test_a_file_from_before_versions_is_upgraded_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.execute(
        "INSERT INTO feedback (time, text, label, predicted_label, agreed)"
        " VALUES ('2025-01-01T10:00:00.000+00:00', 'a door', 'E', 'E', 1)"
    )
    old.execute("INSERT INTO feedback (time, text, label) VALUES ('2025-01-01T11:00:00.000+00:00', 'a yarn', 'D')")
    logged = [("p1", "2025-01-01T10:05:00.000+00:00", "G", 0.95, 0), ("p2", "2025-01-01T10:59:00.000+00:00", "G", 0.3, 1),
              ("p3", "2025-01-01T11:00:00.000+00:00", "A", 1.0, 0)]  # fmt: skip
    old.executemany("INSERT INTO predictions VALUES (?, ?, 'm@1', ?, ?, 5.0, ?, NULL)", logged)
    old.commit()
    old.close()

    store = FeedbackStore(path)
    assert store.store.version() == head_revision()
    rows = store.rows()
    assert [(r["id"], r["text"], r["label"], r["status"], r["code"]) for r in rows] == [
        (1, "a door", "E", "accepted", None),
        (2, "a yarn", "D", "accepted", None),
    ]
    assert store.add(Feedback(text="a bridge", label="E01D")) == 3
    stats = PredictionLog(path).stats()
    assert stats["predictions_total"] == 3 and stats["needs_review_total"] == 1
    assert stats["label_mix"]["G"] == 2 and stats["label_mix"]["A"] == 1
    assert {b["bin"]: b["count"] for b in stats["confidence_histogram"]}["0.9-1.0"] == 2
    assert [b["count"] for b in stats["predictions_over_time"]] == [2, 1]
    assert PredictionLog(path).find("p2").confidence == 0.3


# A file as the release before lists of codes (revision 0002) left it: its tables as SQLite created them.
RELEASE_0002_SCHEMA = """
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
CREATE TABLE feedback (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, prediction_id TEXT, text TEXT NOT NULL,
    label TEXT NOT NULL, predicted_label TEXT, agreed INTEGER, comment TEXT, model_version TEXT,
    source TEXT DEFAULT 'api' NOT NULL, code TEXT, sender TEXT, status TEXT DEFAULT 'accepted' NOT NULL,
    reviewed_by TEXT, reviewed_at TEXT
);
CREATE INDEX feedback_prediction_id ON feedback (prediction_id);
CREATE INDEX feedback_status ON feedback (status);
CREATE TABLE predictions (
    id TEXT NOT NULL, time TEXT NOT NULL, model_version TEXT NOT NULL, label TEXT NOT NULL, confidence FLOAT NOT NULL,
    latency_ms FLOAT NOT NULL, needs_review INTEGER NOT NULL, text TEXT, PRIMARY KEY (id)
);
CREATE INDEX predictions_time ON predictions (time);
CREATE TABLE prediction_texts (prediction_id TEXT NOT NULL, time TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (prediction_id));
CREATE INDEX prediction_texts_time ON prediction_texts (time);
CREATE TABLE prediction_totals (
    label TEXT NOT NULL, bin INTEGER NOT NULL, count BIGINT NOT NULL, needs_review BIGINT NOT NULL, PRIMARY KEY (label, bin)
);
CREATE TABLE prediction_buckets (width TEXT NOT NULL, start TEXT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (width, start));
INSERT INTO alembic_version VALUES ('0002');
"""

# Rows of that release: a subclass, a row from before codes (code NULL), a pending one from the UI.
RELEASE_0002_ROWS = [
    ("2026-11-30T10:00:00.000+00:00", "p1", "a touch screen", "G", "G", 1, "a comment", "m@1", "api", "G06F", "alice", "accepted"),
    ("2026-11-30T10:01:00.000+00:00", None, "an antenna", "H", None, None, None, "m@1", "api", None, None, "accepted"),
    ("2026-11-30T10:02:00.000+00:00", "p3", "a woven fabric", "D", "A", 0, None, "m@1", "api", "D03", "ui", "pending"),
]  # fmt: skip
_OLD_COLUMNS = "time, prediction_id, text, label, predicted_label, agreed, comment, model_version, source, code, sender, status"


def _check_release_0002_rows_after_upgrade(target: str, before: list[dict], tmp_path) -> None:
    """Opened by this code: the schema is the newest, every old value is as it was, the old rows read
    back with their one code, review and export work on them, and new rows keep lists of codes."""
    store = FeedbackStore(target)
    assert store.store.version() == SCHEMA_VERSION
    with store.store.read() as conn:
        assert conn.execute(sa.text("SELECT codes FROM feedback ORDER BY id")).scalars().all() == [None] * 3  # not rewritten
    rows = store.rows()
    assert [{k: v for k, v in r.items() if k != "codes"} for r in rows] == before
    assert [r["codes"] for r in rows] == [["G06F"], ["H"], ["D03"]]
    assert store.review(3, accept=True, reviewer="bob")["codes"] == ["D03"]
    new = store.add(Feedback(text="a lamp", codes=["F21V 8/00", "F21S"], sender="alice"))
    assert new == 4 and store.get(new)["codes"] == ["F21V 8/00", "F21S"]

    output = tmp_path / "export.jsonl"
    assert export_jsonl(target, output) == 4
    exported = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["section"], r.get("subclass"), r.get("ipc")) for r in exported] == [
        ("G", "G06F", "G06F"),  # as the old release exported them
        ("H", None, None),
        ("D", None, "D03"),
        ("F", "F21V", "F21V 8/00; F21S"),
    ]


def test_a_file_of_the_release_before_lists_of_codes_keeps_its_rows(tmp_path):
    path = tmp_path / "release-0002.db"
    old = sqlite3.connect(path)
    old.executescript(RELEASE_0002_SCHEMA)
    old.executemany(f"INSERT INTO feedback ({_OLD_COLUMNS}) VALUES ({', '.join('?' * 12)})", RELEASE_0002_ROWS)
    old.commit()
    old.row_factory = sqlite3.Row
    before = [dict(r) for r in old.execute("SELECT * FROM feedback ORDER BY id")]
    old.close()
    assert len(before) == 3 and "codes" not in before[0]
    _check_release_0002_rows_after_upgrade(str(path), before, tmp_path)


def test_a_database_at_revision_0002_keeps_its_rows(database, tmp_path):
    # Both engines: the schema the released migrations built (up to 0002), rows written in it, then this code.
    from alembic import command

    old = Store(database, migrate=False)
    config = alembic_config()
    with old.write() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        names = _OLD_COLUMNS.split(", ")
        conn.execute(
            sa.text(f"INSERT INTO feedback ({_OLD_COLUMNS}) VALUES ({', '.join(':' + n for n in names)})"),
            [dict(zip(names, row)) for row in RELEASE_0002_ROWS],
        )
    assert old.version() == "0002"
    with old.read() as conn:
        before = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM feedback ORDER BY id"))]
    old.dispose()
    assert len(before) == 3 and "codes" not in before[0]
    _check_release_0002_rows_after_upgrade(database, before, tmp_path)


def test_replicas_that_start_together_migrate_once(database):
    errors, stores = [], []

    def start():
        try:
            stores.append(Store(database))  # a Store of its own each, as separate processes would have
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and len(stores) == 4
    assert {s.version() for s in stores} == {head_revision()}


# --- concurrent writers and faults -----------------------------------------------------------------


def _write_items(target: str, writer: int, count: int) -> None:
    store = FeedbackStore(target)
    for i in range(count):
        store.add(Feedback(text=f"text {writer}-{i}", label=CODES[i % 9], comment=f"{writer}-{i}", source="test"))


def test_concurrent_writer_processes_store_every_item_exactly_once(database):
    FeedbackStore(database)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_items, args=(database, w, 25)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(600)  # spawned processes import SQLAlchemy afresh: slow on a busy machine
        assert process.exitcode == 0
    comments = [row["comment"] for row in FeedbackStore(database).rows()]
    assert sorted(comments) == sorted(f"{w}-{i}" for w in range(4) for i in range(25))
    if "://" not in database:
        assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class SimulatedBusyCommit(Exception):
    """Raised where the COMMIT would run: the transaction stays open, as SQLite leaves it after a
    COMMIT that got SQLITE_BUSY."""


def _fault_at_next_commit(store: Store, fault) -> None:
    fired = []

    def on_commit(conn) -> None:
        if not fired:
            fired.append(True)
            fault(conn)

    event.listen(store.engine, "commit", on_commit)


def _libpq_url(store: Store) -> str:
    return store.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _disk_full(store: Store):
    """SQLite: the file size limit drops to the WAL's size, so writing the commit's pages fails (EFBIG: "disk full")."""
    wal = Path(store.url.database + "-wal")

    def fault(_conn) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return fault


def _connection_lost(store: Store):
    """PostgreSQL: another session terminates this connection's backend just before its COMMIT."""
    import psycopg

    def fault(conn) -> None:
        pid = conn.connection.dbapi_connection.info.backend_pid
        with psycopg.connect(_libpq_url(store), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    return fault


def _leave_transaction_open(_conn) -> None:
    raise SimulatedBusyCommit("database is locked")


@pytest.mark.parametrize("fault", ["real", "transaction left open"])
def test_a_failed_commit_is_rolled_back_and_writing_goes_on(database, fault):
    store = FeedbackStore(Store(database))
    store.add(Feedback(text="before", label="A"))
    if fault == "real":
        injected = _disk_full(store.store) if store.store.dialect == "sqlite" else _connection_lost(store.store)
    else:
        injected = _leave_transaction_open
    _fault_at_next_commit(store.store, injected)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing us
    try:
        with pytest.raises((sa.exc.DBAPIError, SimulatedBusyCommit)):
            store.add(Feedback(text="lost " + "x" * 200_000, label="B"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    # The same store (same pool, same thread) writes again; the failed row is not there.
    for i in range(3):
        store.add(Feedback(text=f"after {i}", label="C"))
    assert [r["text"] for r in store.rows()] == ["before", "after 0", "after 1", "after 2"]
    with store.store.read() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_a_failed_log_flush_keeps_its_rows_for_the_next_one(database):
    log = PredictionLog(Store(database))
    log.add([_row(1, "G", 0.9)])
    log.flush()
    log.add([_row(2, "H", 0.8), _row(3, "H", 0.7)])
    _fault_at_next_commit(log.store, _leave_transaction_open)
    with pytest.raises(SimulatedBusyCommit):
        log.flush()
    assert log.find("id2").label == "H"  # still buffered
    assert log.flush() == 2
    assert log.stats()["predictions_total"] == 3


def _hold_write_lock(store: Store):
    """Another client holds the write lock: SQLite's reserved lock, or a PostgreSQL table lock."""
    if store.dialect == "sqlite":
        other = sqlite3.connect(store.url.database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        return lambda: (other.execute("ROLLBACK"), other.close())
    import psycopg

    other = psycopg.connect(_libpq_url(store))
    other.execute("LOCK TABLE feedback IN EXCLUSIVE MODE")
    return lambda: (other.rollback(), other.close())


def test_a_locked_database_fails_a_write_in_time_then_takes_the_next(database):
    Store(database)  # migrated
    store = FeedbackStore(Store(database, busy_timeout_s=0.5))
    release = _hold_write_lock(store.store)
    try:
        started = datetime.now()
        with pytest.raises(sa.exc.OperationalError, match="(?i)lock"):
            store.add(Feedback(text="while locked", label="A"))
        assert (datetime.now() - started).total_seconds() < 20
    finally:
        release()
    store.add(Feedback(text="after the lock", label="A"))
    assert [r["text"] for r in store.rows()] == ["after the lock"]


# --- feedback: codes, senders, reviews, export -----------------------------------------------------


@pytest.mark.parametrize(
    "value,code", [("G", "G"), ("g", "G"), (6, "G"), ("6", "G"), ("G06", "G06"), ("g06f", "G06F"), (" H04N ", "H04N")]
)
def test_feedback_codes_of_every_level(value, code):
    assert feedback_code(value) == code


@pytest.mark.parametrize("value", ["Z", "I06", "G6", "G06FF", "G06F1", "G06F 3/048", "06F", "", None, 12, True])
def test_malformed_codes_are_refused(value):
    with pytest.raises(ValueError, match="expected a section"):
        feedback_code(value)


def test_feedback_keeps_the_finest_code_its_sender_and_its_review(database, tmp_path):
    store = FeedbackStore(database)
    store.add(Feedback(text="a sensor", label="G06F", predicted_label="G", sender="alice"))
    store.add(Feedback(text="a chip", label="h01", predicted_label="G", sender="alice"))
    pending = store.add(Feedback(text="an antenna", label="H", sender="ui", status="pending"))
    rejected = store.add(Feedback(text="spam", label="A", sender="ui", status="pending"))
    with pytest.raises(ValueError):
        store.add(Feedback(text="a bad one", label="G6"))
    rows = store.rows()
    assert [(r["label"], r["code"], r["agreed"], r["sender"], r["status"]) for r in rows] == [
        ("G", "G06F", 1, "alice", "accepted"),
        ("H", "H01", 0, "alice", "accepted"),
        ("H", "H", None, "ui", "pending"),
        ("A", "A", None, "ui", "pending"),
    ]
    assert store.summary()["pending"] == 2

    output = tmp_path / "export.jsonl"
    assert export_jsonl(database, output) == 2  # pending feedback waits for a reviewer
    assert export_jsonl(database, output, include_pending=True) == 4

    reviewed = store.review(pending, accept=True, reviewer="bob")
    assert reviewed["status"] == "accepted" and reviewed["reviewed_by"] == "bob" and reviewed["reviewed_at"]
    store.review(rejected, accept=False, reviewer="bob")
    with pytest.raises(ReviewConflict, match="accepted"):
        store.review(pending, accept=False, reviewer="carol")
    with pytest.raises(KeyError):
        store.review(999, accept=True, reviewer="bob")
    assert export_jsonl(database, output, include_pending=True) == 3  # rejected: never

    exported = [json.loads(line) for line in output.read_text().splitlines()]
    assert exported[0] | {"time": None} == {
        "id": "feedback-1", "text": "a sensor", "label": "G", "section": "G", "class": "G06", "subclass": "G06F", "ipc": "G06F",
        "source": "feedback:1", "time": None, "sender": "alice", "status": "accepted",
    }  # fmt: skip
    assert exported[1]["class"] == "H01" and exported[1]["ipc"] == "H01" and "subclass" not in exported[1]
    assert exported[2]["section"] == "H" and "class" not in exported[2] and "ipc" not in exported[2]
    assert exported[2]["reviewed_by"] == "bob"
    split = load_split(str(output), "train")
    assert split.texts == ["a sensor", "a chip", "an antenna"] and [CODES[i] for i in split.labels] == ["G", "H", "H"]


def test_feedback_keeps_every_code_main_first(database, tmp_path):
    store = FeedbackStore(database)
    given = ["g06f3/00", "G06F", " H04N 5/00 ", "G06F 3/00"]  # the last one again, in CPC's spelling
    first = store.add(Feedback(text="a touch screen", codes=given, predicted_label="G", sender="alice"))
    row = store.get(first)
    assert (row["label"], row["code"], row["codes"], row["agreed"]) == ("G", "G06F 3/00", ["G06F 3/00", "G06F", "H04N 5/00"], 1)
    with store.store.read() as conn:  # the column holds JSON
        raw = conn.execute(sa.text("SELECT codes FROM feedback WHERE id = :id"), {"id": first}).scalar_one()
    assert json.loads(raw) == ["G06F 3/00", "G06F", "H04N 5/00"]
    # A label too: it must be in the main code's section, and the codes decide the rest.
    second = store.add(Feedback(text="a lamp and a lens", label="f", codes=["F21V", "G02B 3/00"], predicted_label="G"))
    assert store.get(second)["codes"] == ["F21V", "G02B 3/00"] and store.get(second)["agreed"] == 0
    third = store.add(Feedback(text="two sections", codes=["H", "G"]))
    assert store.get(third)["code"] == "H"
    fourth = store.add(Feedback(text="a label alone", label="B65D"))
    assert store.get(fourth)["codes"] == ["B65D"]

    refused = [
        (dict(label="H", codes=["G06F"]), "label 'H' is in section H but the main code 'G06F'"),
        (dict(codes=["G06F", "G06F 3/048"]), "'G06F 3/048' is a subgroup: give its main group, G06F 3/00"),
        (dict(codes=["G06F", "Z01"]), "not a CPC code: 'Z01'"),
        (dict(codes=[]), "codes is empty"),
        (dict(codes="G06F"), "a list of codes"),
        (dict(codes=[f"G06F {i}/00" for i in range(1, MAX_CODES + 2)]), f"at most {MAX_CODES}"),
        (dict(), "a label or codes"),
    ]
    for fields, message in refused:
        with pytest.raises(ValueError, match=re.escape(message)):
            store.add(Feedback(text="refused", **fields))
    assert store.add(Feedback(text="twenty", codes=[f"G06F {i}/00" for i in range(1, MAX_CODES + 1)])) == 5
    assert store.count() == 5

    output = tmp_path / "export.jsonl"
    assert export_jsonl(database, output) == 5
    exported = [json.loads(line) for line in output.read_text().splitlines()]
    assert exported[0] | {"time": None} == {
        "id": f"feedback-{first}", "text": "a touch screen", "label": "G", "section": "G", "class": "G06", "subclass": "G06F",
        "ipc": "G06F 3/00; G06F; H04N 5/00", "source": f"feedback:{first}", "time": None, "sender": "alice", "status": "accepted",
    }  # fmt: skip
    assert exported[2]["ipc"] == "H; G" and "class" not in exported[2]
    assert exported[3]["ipc"] == "B65D" and exported[3]["subclass"] == "B65D"  # as before lists of codes
    # What training reads: every code (main first) for the section / class / subclass heads, and the groups.
    split = load_split(str(output), "train")
    assert [CODES[i] for i in split.labels] == ["G", "F", "H", "B", "G"]
    assert split.codes[:4] == [["G06F", "H04N"], ["F21V", "G02B"], ["H", "G"], ["B65D"]]
    assert split.groups[:4] == [["G06F 3/00", "H04N 5/00"], ["G02B 3/00"], [], []]


# --- the predictions log ------------------------------------------------------------------------


def _row(i: int, label: str, confidence: float, *, time: str | None = None, text: str | None = None) -> LoggedPrediction:
    options = dict(model_version="m@1", label=label, confidence=confidence, latency_ms=3.0, text=text)
    options["needs_review"] = confidence < 0.5
    row = new_log_row(f"id{i}", **options)
    if time:
        row.time = time
    return row


def _scan(rows: list[LoggedPrediction], bucket: str = "hour") -> dict:
    """What /stats should say, counted the slow way."""
    chars = 13 if bucket == "hour" else 16
    over_time: dict[str, int] = {}
    for r in rows:
        over_time[r.time[:chars]] = over_time.get(r.time[:chars], 0) + 1
    return {
        "total": len(rows),
        "review": sum(r.needs_review for r in rows),
        "mix": {code: sum(r.label == code for r in rows) for code in CODES},
        "bins": [sum(confidence_bin(r.confidence) == i for r in rows) for i in range(10)],
        "over_time": [over_time[k] for k in sorted(over_time)],
    }


def test_rolled_up_counts_match_a_scan_of_the_log(database):
    rng = random.Random(7)
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    rows = [
        _row(i, rng.choice(CODES), rng.choice([0.0, 0.05, 0.1, 0.449, 0.5, 0.999, 1.0, rng.random()]),
             time=(start + timedelta(minutes=rng.randrange(0, 600))).isoformat(timespec="milliseconds"))
        for i in range(500)
    ]  # fmt: skip
    log = PredictionLog(database)
    for chunk in range(0, 500, 120):  # several flushes, as the service makes
        log.add(rows[chunk : chunk + 120])
        log.flush()
    log.add(rows[:50])  # the same ids again (a flush retried after an unclear COMMIT): not counted twice
    assert log.flush() == 0
    expected = _scan(rows)
    stats = log.stats(buckets=1000)
    assert stats["predictions_total"] == expected["total"] and stats["needs_review_total"] == expected["review"]
    assert stats["label_mix"] == expected["mix"]
    assert [b["count"] for b in stats["confidence_histogram"]] == expected["bins"]
    assert [b["count"] for b in stats["predictions_over_time"]] == expected["over_time"]
    minutes = log.stats(bucket="minute", buckets=10_000)["predictions_over_time"]
    assert [b["count"] for b in minutes] == _scan(rows, "minute")["over_time"]
    assert len(log.stats(buckets=3)["predictions_over_time"]) == 3


def test_retention_trims_the_log_but_not_the_counts(database):
    now = datetime.now(timezone.utc)
    log = PredictionLog(database, shared_texts=3)
    rows = [_row(i, "G", 0.9, time=(now - timedelta(days=10 - i)).isoformat(timespec="milliseconds")) for i in range(10)]
    log.add(rows, {r.id: f"text {r.id}" for r in rows})
    log.flush()
    assert log.find("id9").text == "text id9"  # shared texts make feedback by id work on any replica
    assert log.trim(days=5.5, now=now) == 5  # rows 0..4 are 6-10 days old
    assert log.find("id4") is None and log.find("id5") is not None
    assert log.trim(rows=2, now=now) == 3
    assert [i for i in range(10) if log.find(f"id{i}")] == [8, 9]
    assert log.stats()["predictions_total"] == 10  # all time
    with log.store.read() as conn:
        texts = conn.execute(sa.text("SELECT prediction_id FROM prediction_texts ORDER BY time")).scalars().all()
        minutes = conn.execute(sa.text("SELECT count(*) FROM prediction_buckets WHERE width = 'minute'")).scalar()
    assert texts == ["id7", "id8", "id9"]
    assert minutes == 7  # a week of minute counts; hour counts stay


def test_texts_stay_out_of_the_database_unless_shared_or_logged(database):
    log = PredictionLog(database)
    log.add([_row(1, "A", 0.9), _row(2, "B", 0.9, text="a logged text")], {"id1": "kept in memory only"})
    log.flush()
    assert log.find("id1").text is None and log.find("id2").text == "a logged text"
    with log.store.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM prediction_texts")).scalar() == 0
