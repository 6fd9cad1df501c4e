"""The allow and block lists in the call-log database.

Entries live in ``list_entries``, one row per (list, kind, value). Adding an
entry that exists updates its note, expiry and source. Every change bumps
``list_changes.counter`` through triggers, which :class:`LiveLists` reads on
each call to notice changes made by the CLI, the classic AGI script or a
handset feature code.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from screener.callerid import CallerId, Presence
from screener.config import Config
from screener.config import Lists as ListSettings
from screener.errors import ListError, StorageError
from screener.flow import Outcome
from screener.lazylog import get_logger
from screener.lists.lookup import ENTRY_COLUMNS, entries_from_rows
from screener.lists.rules import (
    EMPTY_INDEX,
    Decision,
    EntryKind,
    ListEntry,
    ListIndex,
    ListName,
)
from screener.records import CallRecord
from screener.storage import Store, open_store

# typing is not imported at run time, for classic AGI's start-up (see
# screener.record). mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio

# A lazy logger: classic AGI imports this module before its first command.
log = get_logger(__name__)

_UPSERT = (
    "INSERT INTO list_entries (list, kind, value, note, expires, source,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (list, kind, value) DO UPDATE SET note = excluded.note,"
    " expires = excluded.expires, source = excluded.source"
)


def add_entry(store: Store, entry: ListEntry) -> bool:
    """Add ``entry``, or update the one with the same value; True if new."""
    with store.transaction() as connection:
        exists = _exists(connection, entry)
        connection.execute(_UPSERT, _row(entry))
    return not exists


def add_entries(store: Store, entries: Sequence[ListEntry]) -> tuple[int, int]:
    """Add or update ``entries`` in one transaction; return (added, updated)."""
    added = 0
    with store.transaction() as connection:
        for entry in entries:
            if not _exists(connection, entry):
                added += 1
            connection.execute(_UPSERT, _row(entry))
    return added, len(entries) - added


def remove_entry(
    store: Store, list_name: ListName, kind: EntryKind, value: str
) -> bool:
    """Remove one entry; return False if there was none."""
    with store.transaction() as connection:
        cursor = connection.execute(
            "DELETE FROM list_entries WHERE list = ? AND kind = ? AND value = ?",
            (list_name.value, kind.value, value),
        )
        return cursor.rowcount > 0


def list_entries(store: Store, list_name: ListName | None = None) -> list[ListEntry]:
    """Return the entries of one list, or of both, in a stable order."""
    if list_name is None:
        rows = store.query(
            f"SELECT {ENTRY_COLUMNS} FROM list_entries ORDER BY list, kind, value"
        )
    else:
        rows = store.query(
            f"SELECT {ENTRY_COLUMNS} FROM list_entries WHERE list = ?"
            " ORDER BY kind, value",
            (list_name.value,),
        )
    return entries_from_rows(rows)


def change_counter(store: Store) -> int:
    """Return the list change counter, which grows on every list change."""
    counter: int = store.query("SELECT counter FROM list_changes WHERE id = 1")[0][0]
    return counter


def load_index(store: Store) -> ListIndex:
    """Build the in-memory index of both lists."""
    # Building allocates two objects per entry and nothing cyclic, so pausing
    # the cyclic garbage collector meanwhile only skips useless full passes;
    # at 100,000 entries that roughly halves the build (bench/lists.py).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return ListIndex(list_entries(store))
    finally:
        if collecting:
            gc.enable()


# Below this many entries a rebuild takes a few milliseconds and runs at once;
# above it, in a worker thread.
BACKGROUND_REBUILD_ENTRIES = 2_000


class LiveLists:
    """The lists of a long-running server, kept in memory and fresh.

    Each decision first reads the change counter (one single-row read) and
    rebuilds the index only when it moved. If the database cannot be read,
    the last index built keeps deciding, because a broken database must not
    stop calls from reaching the menu.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._counter: int | None = None
        self._building: int | None = None
        self._index = EMPTY_INDEX

    @property
    def index(self) -> ListIndex:
        """Return the current index, refreshing it first if the lists changed."""
        self.refresh()
        return self._index

    def refresh(self) -> None:
        """Rebuild the index if the lists changed since the last build.

        A small index is rebuilt at once. A large one (a rebuild at 100,000
        entries takes about a second) is rebuilt in a worker thread with its
        own connection while the previous index keeps deciding, so a list
        change never stalls the calls on the event loop.
        """
        try:
            counter = change_counter(self._store)
        except (StorageError, ListError) as exc:
            log.error("could not read the allow and block lists: %s", exc)
            return
        if counter in (self._counter, self._building):
            return
        loop = _running_loop()
        if loop is None or self._index.size < BACKGROUND_REBUILD_ENTRIES:
            self._rebuild_now(counter)
            return
        self._building = counter
        future = loop.run_in_executor(None, _load_index_from, self._store.path)
        future.add_done_callback(lambda done: self._install(counter, done))

    def _rebuild_now(self, counter: int) -> None:
        try:
            index = load_index(self._store)
        except (StorageError, ListError) as exc:
            log.error("could not reload the allow and block lists: %s", exc)
            return
        self._use(index, counter)

    def _install(self, counter: int, done: asyncio.Future[ListIndex]) -> None:
        self._building = None
        exc = done.exception()
        if exc is not None:
            log.error("could not reload the allow and block lists: %s", exc)
            return
        self._use(done.result(), counter)

    def _use(self, index: ListIndex, counter: int) -> None:
        self._index = index
        self._counter = counter
        log.info("loaded the allow and block lists: %d entries", index.size)

    def decide(self, caller: CallerId, withheld: str) -> Decision:
        """Apply the rules to ``caller`` with fresh lists."""
        return self.index.decide(caller, withheld)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    # Imported here because asyncio costs classic AGI about 30 ms of start-up,
    # and only the server, which has a loop, rebuilds in the background.
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _load_index_from(path: Path) -> ListIndex:
    """Build the index through a connection of the calling thread's own."""
    store = open_store(path)
    try:
        return load_index(store)
    finally:
        store.close()


def learn(store: Store, call: CallRecord, settings: ListSettings) -> ListEntry | None:
    """Add the caller to a list if the settings learn from the call's outcome.

    Only calls with a number are learned from. Returns the entry added, or
    None if nothing was learned.
    """
    if call.number is None or call.presence != Presence.PRESENT.value:
        return None
    day = call.started_at.astimezone().date().isoformat()
    list_name: ListName | None = None
    if call.outcome is Outcome.PASSED_OWNER and settings.allow_after_owner_key:
        list_name, reason = ListName.ALLOW, f"pressed the owner's key on {day}"
    elif call.outcome is Outcome.TRAPPED_DECOY and settings.block_after_decoy:
        list_name, reason = ListName.BLOCK, f"asked for the decoy on {day}"
    elif call.outcome is Outcome.TRAPPED_SILENT and settings.block_after_silence:
        list_name, reason = ListName.BLOCK, f"pressed no key on {day}"
    if list_name is None:
        return None
    entry = ListEntry(
        list_name, EntryKind.NUMBER, call.number, note=reason, source="learned"
    )
    with store.transaction() as connection:
        # A learned entry never replaces one the owner made or imported.
        if _exists(connection, entry):
            return None
        connection.execute(_UPSERT, _row(entry))
    log.info(
        "[%s] %s now on the %s list: %s", call.uniqueid, call.number, list_name, reason
    )
    return entry


def record_and_learn(store: Store, call: CallRecord, config: Config) -> None:
    """Log a call, queue its report if it is a trap and mail is on, then learn.

    With mail off nothing is queued, so switching mail on later does not
    send a flood of reports about old calls.
    """
    store.record_call(call, report=call.outcome.is_trap and config.mail.enabled)
    learn(store, call, config.lists)


def last_caller(store: Store) -> CallRecord | None:
    """Return the most recent logged call that came with a number."""
    return store.last_call_with_number()


def _exists(connection: sqlite3.Connection, entry: ListEntry) -> bool:
    row = connection.execute(
        "SELECT 1 FROM list_entries WHERE list = ? AND kind = ? AND value = ?",
        (entry.list.value, entry.kind.value, entry.value),
    ).fetchone()
    return row is not None


def _row(entry: ListEntry) -> tuple[object, ...]:
    return (
        entry.list.value,
        entry.kind.value,
        entry.value,
        entry.note,
        entry.expires.isoformat() if entry.expires else None,
        entry.source,
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
