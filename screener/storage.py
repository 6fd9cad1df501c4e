"""The SQLite call log and the mail outbox.

One row per call in ``calls``. A trapped call also gets a row in ``outbox``
in the same transaction, so a report can never be lost between "the call was
logged" and "the email was queued": either both rows exist or neither does.

The schema is versioned with ``PRAGMA user_version`` and migrated by
:func:`open_store`; opening never seeds data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from screener.errors import StorageError
from screener.flow import Outcome, Stage
from screener.records import CallRecord

# A second writer (the classic AGI process, or the CLI) may hold the lock for a
# moment; waiting this long beats failing the call's log row.
BUSY_TIMEOUT_MS = 5000

_MIGRATIONS = (
    """
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        uniqueid TEXT NOT NULL,
        channel TEXT NOT NULL,
        number_raw TEXT NOT NULL,
        name_raw TEXT NOT NULL,
        number TEXT,
        name TEXT,
        presence TEXT NOT NULL,
        keys TEXT NOT NULL,
        stage TEXT NOT NULL,
        outcome TEXT NOT NULL,
        duration REAL NOT NULL
    );
    CREATE INDEX calls_started_at ON calls (started_at);
    CREATE INDEX calls_number ON calls (number);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        call_id INTEGER NOT NULL REFERENCES calls (id),
        created_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    """,
)


class Store:
    """An open call-log database."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._connection = connection
        self.path = path

    def close(self) -> None:
        """Close the database."""
        self._connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block in one transaction, committed on success."""
        try:
            with _transaction(self._connection) as connection:
                yield connection
        except sqlite3.Error as exc:
            raise StorageError(f"database {str(self.path)!r}: {exc}") from exc

    def record_call(self, record: CallRecord, *, report: bool) -> int:
        """Log a call, queueing its report in the same transaction if asked."""
        with self.transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO calls (started_at, uniqueid, channel, number_raw,"
                " name_raw, number, name, presence, keys, stage, outcome, duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _call_row(record),
            )
            call_id = cursor.lastrowid
            assert call_id is not None
            if report:
                now = _timestamp(datetime.now(UTC))
                connection.execute(
                    "INSERT INTO outbox (call_id, created_at, next_attempt_at)"
                    " VALUES (?, ?, ?)",
                    (call_id, now, now),
                )
        return call_id

    def recent_calls(self, limit: int = 20) -> list[CallRecord]:
        """Return the latest ``limit`` calls, newest first."""
        rows = self.query(
            "SELECT * FROM calls ORDER BY started_at DESC, id DESC LIMIT ?", (limit,)
        )
        return [_record_from_row(row) for row in rows]

    def call_by_uniqueid(self, uniqueid: str) -> CallRecord | None:
        """Return the call with this Asterisk uniqueid, if it was logged."""
        rows = self.query(
            "SELECT * FROM calls WHERE uniqueid = ? ORDER BY id DESC LIMIT 1",
            (uniqueid,),
        )
        return _record_from_row(rows[0]) if rows else None

    def query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Run a read-only statement and return its rows."""
        try:
            return self._connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"database {str(self.path)!r}: {exc}") from exc


def open_store(path: Path) -> Store:
    """Open (creating if needed) and migrate the database at ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open database {str(path)!r}: {exc}") from exc
    connection.row_factory = sqlite3.Row
    store = Store(connection, path)
    try:
        _configure(connection)
        _migrate(connection)
    except sqlite3.Error as exc:
        connection.close()
        raise StorageError(f"cannot use database {str(path)!r}: {exc}") from exc
    return store


def _configure(connection: sqlite3.Connection) -> None:
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # WAL lets the CLI read while the server writes; NORMAL sync is durable
    # across a process crash and costs one fsync per checkpoint, not per call.
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")


def _migrate(connection: sqlite3.Connection) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        with _transaction(connection):
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # The connection runs in autocommit mode (isolation_level=None) so that
    # transactions are explicit. IMMEDIATE takes the write lock up front, so a
    # busy database waits at BEGIN instead of failing halfway through.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _call_row(record: CallRecord) -> tuple[object, ...]:
    return (
        _timestamp(record.started_at),
        record.uniqueid,
        record.channel,
        record.number_raw,
        record.name_raw,
        record.number,
        record.name,
        record.presence,
        record.keys,
        record.stage.value,
        record.outcome.value,
        record.duration,
    )


def _record_from_row(row: sqlite3.Row) -> CallRecord:
    return CallRecord(
        id=row["id"],
        started_at=datetime.fromisoformat(row["started_at"]),
        uniqueid=row["uniqueid"],
        channel=row["channel"],
        number_raw=row["number_raw"],
        name_raw=row["name_raw"],
        number=row["number"],
        name=row["name"],
        presence=row["presence"],
        keys=row["keys"],
        stage=Stage(row["stage"]),
        outcome=Outcome(row["outcome"]),
        duration=row["duration"],
    )
