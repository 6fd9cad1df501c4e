"""The allow and block list lookup of a process that decides one call.

Classic AGI decides each call before its first command, because an allowed
caller is not answered at all. So this module reads the entries with the
sqlite3 module alone, and the database layer (``screener.storage``, with its
schema migrations and WAL set-up) loads after the first command, when the
call is logged. Only the entries that could match the caller are read: the
exact number and each of its prefixes through the table's unique index, and
the name patterns in full.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import date

from screener.callerid import CallerId
from screener.lazylog import get_logger
from screener.lists.rules import Decision, EntryKind, ListEntry, ListIndex, ListName

# A lazy logger: classic AGI imports this module before its first command.
log = get_logger(__name__)

ENTRY_COLUMNS = "id, list, kind, value, note, expires, source"
# The call-log schema version (PRAGMA user_version) whose migration in
# screener.storage creates list_entries.
LISTS_SCHEMA_VERSION = 2

_LIST_NAMES = {name.value: name for name in ListName}
_KINDS = {kind.value: kind for kind in EntryKind}


def entries_from_rows(rows: Sequence[sqlite3.Row]) -> list[ListEntry]:
    """Turn ``list_entries`` rows, selected as ENTRY_COLUMNS, into entries.

    A row that is invalid, such as one edited by hand with an expiry that is
    not a date, is skipped with a warning, and the others still apply.
    """
    try:
        return _convert(rows)
    except _ROW_ERRORS:
        # Convert again row by row, to skip only the invalid ones.
        return [entry for row in rows for entry in _convert_or_skip(row)]


# The exceptions that an invalid column value raises in _convert.
_ROW_ERRORS = (KeyError, ValueError, TypeError)


def _convert(rows: Sequence[sqlite3.Row]) -> list[ListEntry]:
    """Convert rows to entries, raising one of _ROW_ERRORS for an invalid row."""
    # Rows are read by position and enums by dict lookup: at 100,000 entries
    # this is most of the time a server spends reloading the lists.
    return [
        ListEntry(
            _LIST_NAMES[list_name],
            _KINDS[kind],
            value,
            note,
            date.fromisoformat(expires) if expires else None,
            source,
            entry_id,
        )
        for entry_id, list_name, kind, value, note, expires, source in rows
    ]


def _convert_or_skip(row: sqlite3.Row) -> list[ListEntry]:
    """Convert one row, or log why it is invalid and return no entry."""
    try:
        return _convert([row])
    except _ROW_ERRORS as exc:
        entry_id, list_name, kind, _value, _note, expires, _source = row
        log.warning(
            "list entry %s skipped: invalid list %r, kind %r or expiry %r (%s)",
            entry_id,
            list_name,
            kind,
            expires,
            exc,
        )
        return []


def candidate_index(connection: sqlite3.Connection, caller: CallerId) -> ListIndex:
    """Build an index of only the entries that could match ``caller``."""
    keys: list[str] = []
    if caller.number is not None:
        number = caller.number
        keys = [number[:length] for length in range(2, len(number) + 1)]
    marks = ", ".join("?" * len(keys)) or "NULL"
    # Every condition names list and kind, so that SQLite reads both parts
    # from the unique (list, kind, value) index instead of scanning the table.
    rows = connection.execute(
        f"SELECT {ENTRY_COLUMNS} FROM list_entries WHERE list IN ('allow', 'block')"
        f" AND kind IN ('number', 'prefix') AND value IN ({marks})"
        f" UNION ALL SELECT {ENTRY_COLUMNS} FROM list_entries"
        " WHERE list IN ('allow', 'block') AND kind = 'name'",
        tuple(keys),
    ).fetchall()
    return ListIndex(entries_from_rows(rows))


class OneCallLists:
    """Lists read for a single call, for a process that serves one call."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def decide(self, caller: CallerId, withheld: str) -> Decision:
        """Apply the rules to ``caller`` using only the entries it could match.

        Raises sqlite3.Error if the entries cannot be read.
        """
        return candidate_index(self._connection, caller).decide(caller, withheld)


def open_lookup(path: str | os.PathLike[str]) -> sqlite3.Connection | None:
    """Open the call-log database for reading the lists.

    Returns None if the database does not exist yet, or predates the lists
    table: either way it has no entries, and screener.storage creates or
    migrates it when the call is logged. Raises sqlite3.Error if the file
    cannot be opened or is not a database.
    """
    if not os.path.exists(path):
        return None
    connection = sqlite3.connect(path)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error:
        connection.close()
        raise
    if version < LISTS_SCHEMA_VERSION:
        connection.close()
        return None
    return connection
