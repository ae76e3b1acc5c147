"""The service's database: one SQLAlchemy engine, the schema (tables below) and its Alembic migrations,
for SQLite and PostgreSQL alike. :mod:`patentclf.store.feedback` and :mod:`patentclf.store.monitoring` are its users.

* A path (or no URL) is the embedded default: a SQLite file, WAL journal, ``synchronous=FULL``, write
  transactions that take the write lock up front (``BEGIN IMMEDIATE``) and wait up to
  :data:`BUSY_TIMEOUT_S` for it. Several processes may share the file.
* ``postgresql://user:password@host:port/db`` is the same schema in PostgreSQL (psycopg 3), for
  several API replicas on one database.
* A write (:meth:`Store.write`) is committed when its block ends; a failed COMMIT (full disk, lost
  connection, lock timeout) is rolled back and the connection is fit for the next write.
* Opening a store brings its schema to the newest version (``alembic upgrade head``), under a lock,
  so replicas that start together migrate once. Files written before the schema had versions are
  adopted as they are.

Times are ISO 8601 UTC strings in both engines, so hour and minute buckets are string prefixes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

BUSY_TIMEOUT_S = 30.0
MIGRATIONS = Path(__file__).with_name("migrations")
SCHEMA_VERSION = "0005"  # the newest revision in migrations/versions (a test keeps them equal)
_MIGRATION_LOCK_ID = 0x7061_7465_6E74  # "patent": one PostgreSQL advisory lock for schema upgrades


class StoreError(RuntimeError):
    """The database cannot be used (unknown URL, a schema newer than this code)."""


# --- the schema (its history is in migrations/versions) ------------------------------------------

metadata = sa.MetaData()

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("time", sa.Text, nullable=False),  # ISO 8601 UTC
    sa.Column("prediction_id", sa.Text),  # the prediction it corrects, when known
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),  # the correct section letter
    sa.Column("predicted_label", sa.Text),  # what the model said, when known
    sa.Column("agreed", sa.Integer),  # 1 / 0, NULL when no prediction is known
    sa.Column("comment", sa.Text),
    sa.Column("model_version", sa.Text),
    sa.Column("source", sa.Text, nullable=False, server_default="api"),
    sa.Column("code", sa.Text),  # the main code: "G", "G06", "G06F" or "G06F 3/00" (NULL in rows from before codes)
    sa.Column("sender", sa.Text),  # name of the API key that sent it
    sa.Column("status", sa.Text, nullable=False, server_default="accepted"),  # accepted | pending | rejected
    sa.Column("reviewed_by", sa.Text),
    sa.Column("reviewed_at", sa.Text),
    # Every code given, main first, as a JSON list: '["G06F 3/00", "H04N"]' (NULL in rows from before
    # lists of codes: they read back as their one code, see feedback.stored_codes)
    sa.Column("codes", sa.Text),
    # The user's own tags of the patent, as a JSON list of {"set", "name"} (NULL: the correction names none).
    sa.Column("tags", sa.Text),
    sa.Index("feedback_prediction_id", "prediction_id"),
    sa.Index("feedback_status", "status"),
    sqlite_autoincrement=True,  # ids are never reused
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # the prediction id the API returned
    sa.Column("time", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),  # of the request that carried it
    sa.Column("needs_review", sa.Integer, nullable=False),
    sa.Column("text", sa.Text),  # only when the service is configured to log texts
    # The review queue's order (higher: look first; inference.review.queue_score) and what a reviewer
    # needs besides the text (JSON: reasons, top sections, best code per level); NULL in rows from before.
    sa.Column("review_score", sa.Float),
    sa.Column("review", sa.Text),
    sa.Index("predictions_time", "time"),
    sa.Index("predictions_review_score", "review_score"),
)

# Texts of recent predictions, so that feedback by id works on any replica; trimmed to the newest few.
prediction_texts = sa.Table(
    "prediction_texts",
    metadata,
    sa.Column("prediction_id", sa.Text, primary_key=True),
    sa.Column("time", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Index("prediction_texts_time", "time"),
)

# Rolled-up counts, updated in the same transaction as the log rows: /stats reads these, never the log.
prediction_totals = sa.Table(
    "prediction_totals",
    metadata,
    sa.Column("label", sa.Text, primary_key=True),
    sa.Column("bin", sa.Integer, primary_key=True),  # confidence decile 0..9
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("needs_review", sa.BigInteger, nullable=False),
)
prediction_buckets = sa.Table(
    "prediction_buckets",
    metadata,
    sa.Column("width", sa.Text, primary_key=True),  # hour | minute
    sa.Column("start", sa.Text, primary_key=True),  # "2025-01-31T14" | "2025-01-31T14:05"
    sa.Column("count", sa.BigInteger, nullable=False),
)


# --- the engine ----------------------------------------------------------------------------------


def describe_target(target: str | Path) -> str:
    """Where a database is, for people: a SQLite file's path, or the URL without its password."""
    text = str(target)
    return make_url(text).render_as_string(hide_password=True) if "://" in text else str(Path(text).expanduser())


def database_url(target: str | Path) -> sa.URL:
    """A URL (``sqlite:///...``, ``postgresql://...``) or a SQLite file path -> a SQLAlchemy URL.
    ``postgresql://`` and ``postgres://`` use psycopg 3 (SQLAlchemy's own default is psycopg2)."""
    text = str(target)
    if "://" not in text:
        path = Path(text).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return sa.URL.create("sqlite", database=str(path))
    url = make_url(text)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {url.get_backend_name()!r}: use a SQLite path or a postgresql:// URL")
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return url


def _sqlite_engine(url: sa.URL, busy_timeout_s: float) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # The driver's own transaction handling off: transactions are ours (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        _set_wal(cursor, busy_timeout_s)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two writers never deadlock upgrading a read lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("patentclf_write") else "BEGIN")

    return engine


def _set_wal(cursor, busy_timeout_s: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried for up to the busy timeout: switching a new database to
    WAL needs a lock that SQLite's busy handler does not wait for, so replicas opening a fresh file
    together could fail at once with "database is locked" (seen 2 times in 40 starts of 4 threads)."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _postgres_engine(url: sa.URL, busy_timeout_s: float) -> Engine:
    # Waits for a lock as long as SQLite would, then fails (and rolls back) instead of hanging.
    options = f"-c lock_timeout={int(busy_timeout_s * 1000)}"
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10, "options": options})


class Store:
    """One database: ``with store.write() as conn`` commits at the end; ``with store.read() as conn``."""

    def __init__(self, target: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S, migrate: bool = True):
        self.url = database_url(target)
        if self.url.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(self.url, busy_timeout_s)
        else:
            self.engine = _postgres_engine(self.url, busy_timeout_s)
        self._writer = self.engine.execution_options(patentclf_write=True)
        if migrate:
            self.upgrade()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def shared(self) -> bool:
        """A server database that several machines reach (PostgreSQL), not a local file."""
        return self.dialect != "sqlite"

    def describe(self) -> str:
        """The URL without its password, for messages."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it (or the COMMIT) fails.
        SQLAlchemy returns the connection to its pool rolled back either way, so the next write starts clean."""
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def insert_ignoring_duplicates(self, table: sa.Table):
        """``INSERT ... ON CONFLICT DO NOTHING`` in this database's dialect."""
        return _dialect_insert(self.dialect)(table).on_conflict_do_nothing()

    def insert_adding(self, table: sa.Table, counters: list[str]):
        """``INSERT ... ON CONFLICT (primary key) DO UPDATE SET c = c + excluded.c`` for each counter."""
        statement = _dialect_insert(self.dialect)(table)
        keys = [c.name for c in table.primary_key.columns]
        return statement.on_conflict_do_update(
            index_elements=keys, set_={c: table.c[c] + statement.excluded[c] for c in counters}
        )

    # -- schema versions ----------------------------------------------------------------------------

    def version(self) -> str | None:
        """The schema's revision (None: no versioned schema yet)."""
        with self.read() as conn:
            try:
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.DBAPIError:  # no such table
                return None

    def upgrade(self) -> None:
        """Bring the schema to the newest version, once, whoever else is starting."""
        if self.version() == SCHEMA_VERSION:
            return  # the usual case, without loading Alembic and the migration scripts
        from alembic import command
        from alembic.util import CommandError

        config = alembic_config()
        with self.write() as conn:  # SQLite: BEGIN IMMEDIATE serialises this
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, "head")
            except CommandError as exc:  # e.g. a database migrated by a newer patentclf
                raise StoreError(f"{self.describe()}: cannot upgrade the schema: {exc}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _dialect_insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


_open: dict[str, Store] = {}
_open_lock = threading.Lock()


def open_store(target: str | Path | Store) -> Store:
    """The process's one :class:`Store` for a URL or path (an engine and its pool are meant to be shared)."""
    if isinstance(target, Store):
        return target
    key = database_url(target).render_as_string(hide_password=False)
    with _open_lock:
        store = _open.get(key)
        if store is None:
            store = _open[key] = Store(target)
        return store
