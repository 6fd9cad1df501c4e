"""Writes finished calls to the call log in batches, one commit per batch.

A commit in WAL mode appends every changed page to the log file, so a server
that commits each call on its own pays that write for every call. The
FastAGI server instead queues finished calls and records them together a
few milliseconds later, in one transaction. Each call's own writes (its call
row, its outbox row and whatever the recorder adds) run in a savepoint inside
it. So a call is still logged whole or not at all, and a failing call does
not cost the others in its batch.

Durability: a crash or a kill -9 loses the calls of at most the last
``interval`` seconds, which were finished but not yet committed. A normal
stop flushes them first.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from screener.errors import StorageError
from screener.records import CallRecord
from screener.storage import Store

log = logging.getLogger(__name__)

# Seconds a finished call may wait for its commit. Short enough that the
# outbox and the list changes of a call are visible before the caller could
# call again, long enough to group the calls that end together under load.
BATCH_INTERVAL = 0.005
# Seconds between WAL checkpoints of the worker thread.
CHECKPOINT_INTERVAL = 1.0
# WAL pages after which the server's own connection checkpoints after all, on
# the event loop, in case the worker's checkpoints fail (about 40 MiB).
FALLBACK_CHECKPOINT_PAGES = 10_000
# While the database stays locked or full, retries back off to this interval.
MAX_RETRY_SECONDS = 2.0
# Calls kept in memory while the database cannot be written. At a few hundred
# bytes each this bounds the memory an hour-long outage can take.
MAX_PENDING_CALLS = 10_000


class BatchRecorder:
    """A call recorder that commits the calls of each ``interval`` together.

    ``record`` writes one call through ``store`` (for example
    ``Store.record_call``), and ``on_flushed`` runs after each commit, such
    as waking the mail sender for the reports just queued. Call it from the
    event loop's thread only.
    """

    def __init__(
        self,
        store: Store,
        record: Callable[[CallRecord], None],
        *,
        interval: float = BATCH_INTERVAL,
        on_flushed: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._record = record
        self._interval = interval
        self._on_flushed = on_flushed
        self._pending: list[CallRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._retry_delay = 0.0

    def __call__(self, call: CallRecord) -> None:
        """Queue ``call`` for the next batch."""
        self._pending.append(call)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Commit the queued calls now, logging database errors, not raising them."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self._store.transaction():
                for call in batch:
                    self._record_one(call)
        except StorageError as exc:
            self._retry_later(batch, exc)
            return
        self._retry_delay = 0.0
        if self._on_flushed is not None:
            self._on_flushed()

    def _retry_later(self, batch: list[CallRecord], exc: StorageError) -> None:
        """Keep a batch that could not be committed, such as on a locked file."""
        self._pending = batch + self._pending
        dropped = len(self._pending) - MAX_PENDING_CALLS
        if dropped > 0:
            lost = ", ".join(call.uniqueid for call in self._pending[:dropped])
            log.error("call log backlog full; dropped %d calls: %s", dropped, lost)
            del self._pending[:dropped]
        self._retry_delay = min(
            MAX_RETRY_SECONDS, max(self._interval, self._retry_delay * 2)
        )
        log.warning(
            "could not log %d calls, retrying in %.2f s: %s",
            len(self._pending),
            self._retry_delay,
            exc,
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # The final flush at shutdown runs after the loop has stopped.
            log.error("%d calls were not logged at shutdown", len(self._pending))
            return
        self._timer = loop.call_later(self._retry_delay, self.flush)

    def _record_one(self, call: CallRecord) -> None:
        try:
            self._record(call)
        except Exception:
            # The store rolled back this call's savepoint, so the rest of the
            # batch still commits.
            log.exception("[%s] could not log the call", call.uniqueid)


class WalCheckpointer:
    """Copies the write-ahead log into the database from a worker thread.

    SQLite's automatic checkpoint runs inside the commit that fills the log
    past 1,000 pages, so it would stall the event loop for its writes and
    fsync (10 to 40 ms measured on the benchmark machine). A PASSIVE
    checkpoint on a connection of its own lets the server keep committing
    meanwhile. Call :meth:`start` after the store is open and :meth:`close`
    once :meth:`run` has stopped.

    The connection stays open from start to close. Opening one per
    checkpoint would cost a file descriptor that SQLite keeps after closing
    while the server's connection holds its locks, so the server's open
    files would grow by one after the first checkpoint.
    """

    def __init__(self, store: Store, *, interval: float = CHECKPOINT_INTERVAL) -> None:
        self._store = store
        self._database = store.path
        self._interval = interval
        self._connection: sqlite3.Connection | None = None

    def start(self) -> None:
        """Open the checkpoint connection and turn the store's own one down."""
        self._store.query(f"PRAGMA wal_autocheckpoint = {FALLBACK_CHECKPOINT_PAGES}")
        # Used by one worker thread at a time: run() awaits each checkpoint.
        self._connection = sqlite3.connect(self._database, check_same_thread=False)
        # The first checkpoint opens the connection's write-ahead log file;
        # doing it here keeps the open files the same from now on.
        _checkpoint(self._connection)

    async def run(self) -> None:
        """Checkpoint every ``interval`` seconds until cancelled."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("WalCheckpointer.run() called before start()")
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(_checkpoint, connection)
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint of %s failed: %s", self._database, exc)

    def close(self) -> None:
        """Close the checkpoint connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
