"""The SQLite call log and the mail outbox.

One row per call in ``calls``. When mail is enabled, a trapped call also gets
a row in ``outbox`` in the same transaction (``record_call(report=True)``),
so a report can never be lost between "the call was logged" and "the email
was queued": either both rows exist or neither does.

The schema is versioned with ``PRAGMA user_version`` and migrated by
:func:`open_store`; opening never seeds data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from screener.errors import StorageError
from screener.flow import Outcome, Stage
from screener.record import Record
from screener.records import CallRecord

# A second writer (the classic AGI process, or the CLI) may hold the lock for a
# moment. Waiting this long beats failing the call's log row.
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
    # The allow and block lists (screener.lists). list_changes.counter grows on
    # every change to list_entries, so a server can tell with one cheap read
    # whether its in-memory index is stale.
    """
    CREATE TABLE list_entries (
        id INTEGER PRIMARY KEY,
        list TEXT NOT NULL CHECK (list IN ('allow', 'block')),
        kind TEXT NOT NULL CHECK (kind IN ('number', 'prefix', 'name')),
        value TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        expires TEXT,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (list, kind, value)
    );
    CREATE TABLE list_changes (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        counter INTEGER NOT NULL
    );
    INSERT INTO list_changes (id, counter) VALUES (1, 0);
    CREATE TRIGGER list_entries_insert AFTER INSERT ON list_entries
    BEGIN UPDATE list_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER list_entries_update AFTER UPDATE ON list_entries
    BEGIN UPDATE list_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER list_entries_delete AFTER DELETE ON list_entries
    BEGIN UPDATE list_changes SET counter = counter + 1 WHERE id = 1; END;
    """,
)


# Outbox states. A report stays 'queued' until the SMTP server accepts it
# ('sent') or rejects it permanently ('failed'); rows are never deleted.
QUEUED = "queued"
SENT = "sent"
FAILED = "failed"


class OutboxEntry(Record):
    """One queued, sent or failed report, with the call it reports."""

    id: int
    call: CallRecord
    created_at: datetime
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None


class TrapCounts(Record):
    """Trapped calls up to and including one call, for its report."""

    same_number_before: int
    today: int
    all_time: int


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

    def last_call_with_number(self) -> CallRecord | None:
        """Return the latest call whose caller ID had a number, if any."""
        rows = self.query(
            "SELECT * FROM calls WHERE number IS NOT NULL"
            " ORDER BY started_at DESC, id DESC LIMIT 1"
        )
        return _record_from_row(rows[0]) if rows else None

    def call_by_uniqueid(self, uniqueid: str) -> CallRecord | None:
        """Return the call with this Asterisk uniqueid, if it was logged."""
        rows = self.query(
            "SELECT * FROM calls WHERE uniqueid = ? ORDER BY id DESC LIMIT 1",
            (uniqueid,),
        )
        return _record_from_row(rows[0]) if rows else None

    def due_reports(self, now: datetime, limit: int) -> list[OutboxEntry]:
        """Return up to ``limit`` queued reports whose next attempt is due."""
        rows = self.query(
            f"{_OUTBOX_SELECT} WHERE o.state = ? AND o.next_attempt_at <= ?"
            " ORDER BY o.id LIMIT ?",
            (QUEUED, _timestamp(now), limit),
        )
        return [_outbox_entry_from_row(row) for row in rows]

    def next_report_due_at(self) -> datetime | None:
        """Return when the earliest queued report falls due, if any is queued."""
        rows = self.query(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE state = ?", (QUEUED,)
        )
        value = rows[0][0]
        return datetime.fromisoformat(value) if value else None

    def claim_reports(
        self, outbox_ids: Sequence[int], now: datetime, lease_until: datetime
    ) -> bool:
        """Lease due reports to this sender until ``lease_until``, all or none.

        The lease is the next attempt time: no other sender (the CLI, a second
        server) sees the rows as due while one is sending them, and a sender
        that dies mid-send leaves rows that fall due again when it expires.
        Return False, claiming nothing, if any row is no longer due.
        """
        marks = _marks(outbox_ids)
        with self.transaction() as connection:
            due = connection.execute(
                f"SELECT COUNT(*) FROM outbox WHERE id IN ({marks})"
                " AND state = ? AND next_attempt_at <= ?",
                (*outbox_ids, QUEUED, _timestamp(now)),
            ).fetchone()[0]
            if due != len(outbox_ids):
                return False
            connection.execute(
                f"UPDATE outbox SET next_attempt_at = ? WHERE id IN ({marks})",
                (_timestamp(lease_until), *outbox_ids),
            )
        return True

    def mark_reports_sent(self, outbox_ids: Sequence[int], sent_at: datetime) -> None:
        """Record that the SMTP server accepted these reports."""
        with self.transaction() as connection:
            connection.execute(
                "UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1,"
                f" last_error = NULL WHERE id IN ({_marks(outbox_ids)})",
                (SENT, _timestamp(sent_at), *outbox_ids),
            )

    def schedule_report_retry(
        self,
        outbox_ids: Sequence[int],
        next_attempt_at: datetime,
        error: str,
        *,
        only_if_due_at: datetime | None = None,
    ) -> None:
        """Count a failed attempt and set when to try again.

        With ``only_if_due_at``, rows leased by another sender are left alone.
        """
        sql = (
            "UPDATE outbox SET next_attempt_at = ?, last_error = ?,"
            f" attempts = attempts + 1 WHERE id IN ({_marks(outbox_ids)})"
            " AND state = ?"
        )
        parameters: tuple[object, ...] = (
            _timestamp(next_attempt_at),
            error,
            *outbox_ids,
            QUEUED,
        )
        if only_if_due_at is not None:
            sql += " AND next_attempt_at <= ?"
            parameters += (_timestamp(only_if_due_at),)
        with self.transaction() as connection:
            connection.execute(sql, parameters)

    def mark_reports_failed(self, outbox_ids: Sequence[int], error: str) -> None:
        """Park reports the server rejected permanently, keeping its reply."""
        with self.transaction() as connection:
            connection.execute(
                "UPDATE outbox SET state = ?, last_error = ?, attempts = attempts + 1"
                f" WHERE id IN ({_marks(outbox_ids)})",
                (FAILED, error, *outbox_ids),
            )

    def defer_reports(self, outbox_ids: Sequence[int], until: datetime) -> None:
        """Move the next attempt of queued reports, without counting an attempt."""
        with self.transaction() as connection:
            connection.execute(
                "UPDATE outbox SET next_attempt_at = ?"
                f" WHERE id IN ({_marks(outbox_ids)}) AND state = ?",
                (_timestamp(until), *outbox_ids, QUEUED),
            )

    def requeue_failed_reports(
        self, outbox_ids: Sequence[int] | None, now: datetime
    ) -> int:
        """Queue failed reports again (all of them if ``outbox_ids`` is None)."""
        sql = "UPDATE outbox SET state = ?, next_attempt_at = ? WHERE state = ?"
        parameters: tuple[object, ...] = (QUEUED, _timestamp(now), FAILED)
        if outbox_ids is not None:
            sql += f" AND id IN ({_marks(outbox_ids)})"
            parameters += tuple(outbox_ids)
        with self.transaction() as connection:
            return connection.execute(sql, parameters).rowcount

    def outbox_entries(
        self, states: Sequence[str], limit: int = 100
    ) -> list[OutboxEntry]:
        """Return reports in the given states, oldest first."""
        rows = self.query(
            f"{_OUTBOX_SELECT} WHERE o.state IN ({_marks(states)})"
            " ORDER BY o.id LIMIT ?",
            (*states, limit),
        )
        return [_outbox_entry_from_row(row) for row in rows]

    def outbox_counts(self) -> dict[str, int]:
        """Return the number of reports in each state."""
        rows = self.query("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {row[0]: row[1] for row in rows}

    def trap_counts(
        self, call: CallRecord, day_start: datetime, day_end: datetime
    ) -> TrapCounts:
        """Count trapped calls up to ``call``: same number, that day, all time."""
        assert call.id is not None, "the call must be logged"
        trapped = "outcome LIKE 'trapped-%' AND id <= ?"
        same_number = 0
        if call.number is not None:
            same_number = self.query(
                f"SELECT COUNT(*) FROM calls WHERE {trapped} AND id < ? AND number = ?",
                (call.id, call.id, call.number),
            )[0][0]
        today = self.query(
            f"SELECT COUNT(*) FROM calls WHERE {trapped}"
            " AND started_at >= ? AND started_at < ?",
            (call.id, _timestamp(day_start), _timestamp(day_end)),
        )[0][0]
        all_time = self.query(
            f"SELECT COUNT(*) FROM calls WHERE {trapped}", (call.id,)
        )[0][0]
        return TrapCounts(same_number, today, all_time)

    def query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Run a read-only statement and return its rows."""
        try:
            return self._connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"database {str(self.path)!r}: {exc}") from exc


def open_store(path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:
    """Open (creating if needed) and migrate the database at ``path``.

    ``busy_timeout_ms`` is how long a write waits for another writer's lock.
    An event loop passes a short one and retries later, rather than stall.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open database {str(path)!r}: {exc}") from exc
    connection.row_factory = sqlite3.Row
    store = Store(connection, path)
    try:
        _configure(connection, busy_timeout_ms)
        _migrate(connection)
    except sqlite3.Error as exc:
        connection.close()
        raise StorageError(f"cannot use database {str(path)!r}: {exc}") from exc
    except StorageError as exc:
        connection.close()
        raise StorageError(f"cannot use database {str(path)!r}: {exc}") from None
    return store


def _configure(connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # WAL lets the CLI read while the server writes; NORMAL sync is durable
    # across a process crash and costs one fsync per checkpoint, not per call.
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")


def _migrate(connection: sqlite3.Connection) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if not 0 <= version <= len(_MIGRATIONS):
        # A negative version would run the wrong migrations, and a newer
        # schema may have columns this version would not fill.
        raise StorageError(
            f"unsupported schema version {version} (expected 0 to"
            f" {len(_MIGRATIONS)}); restore a backup, or upgrade Screener"
        )
    for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        with _transaction(connection):
            for statement in _statements(script):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements.

    A trigger body contains semicolons of its own, so a piece is only a whole
    statement once SQLite's own parser says it is complete.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # The connection runs in autocommit mode (isolation_level=None) so that
    # transactions are explicit. IMMEDIATE takes the write lock up front, so a
    # busy database waits at BEGIN instead of failing halfway through.
    if connection.in_transaction:
        # Inside an outer transaction, such as a batch of calls, a savepoint
        # keeps this block all-or-nothing and the outer block commits it.
        with _savepoint(connection):
            yield connection
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


@contextmanager
def _savepoint(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("SAVEPOINT nested")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK TO nested")
        connection.execute("RELEASE nested")
        raise
    connection.execute("RELEASE nested")


_OUTBOX_SELECT = (
    "SELECT c.*, o.id AS outbox_id, o.created_at AS outbox_created_at,"
    " o.state AS outbox_state, o.attempts AS outbox_attempts,"
    " o.next_attempt_at AS outbox_next_attempt_at,"
    " o.last_error AS outbox_last_error, o.sent_at AS outbox_sent_at"
    " FROM outbox o JOIN calls c ON c.id = o.call_id"
)


def _marks(values: Sequence[object]) -> str:
    if not values:
        raise ValueError("expected at least one id")
    return ", ".join("?" * len(values))


def _outbox_entry_from_row(row: sqlite3.Row) -> OutboxEntry:
    sent_at = row["outbox_sent_at"]
    return OutboxEntry(
        id=row["outbox_id"],
        call=_record_from_row(row),
        created_at=datetime.fromisoformat(row["outbox_created_at"]),
        state=row["outbox_state"],
        attempts=row["outbox_attempts"],
        next_attempt_at=datetime.fromisoformat(row["outbox_next_attempt_at"]),
        last_error=row["outbox_last_error"],
        sent_at=datetime.fromisoformat(sent_at) if sent_at else None,
    )


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
