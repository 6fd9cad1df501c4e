"""The SQLite call log and outbox."""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from screener.errors import StorageError
from screener.flow import Outcome, Stage
from screener.records import CallRecord
from screener.storage import _MIGRATIONS, open_store


def make_call(uniqueid: str, outcome: Outcome = Outcome.TRAPPED_DECOY) -> CallRecord:
    return CallRecord(
        started_at=datetime(2026, 12, 4, 15, 0, tzinfo=UTC),
        uniqueid=uniqueid,
        channel="DAHDI/1-1",
        number_raw="5550100123",
        name_raw="ACME",
        number="+15550100123",
        name="ACME",
        presence="present",
        keys="29",
        stage=Stage.DECOY,
        outcome=outcome,
        duration=12.5,
    )


def test_call_round_trips(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.sqlite")
    call_id = store.record_call(make_call("1.1"), report=True)
    stored = store.call_by_uniqueid("1.1")
    assert stored is not None
    assert stored.id == call_id
    assert stored.outcome is Outcome.TRAPPED_DECOY
    assert stored.keys == "29"
    assert stored.started_at == make_call("1.1").started_at


def test_trap_queues_report_in_outbox(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.sqlite")
    call_id = store.record_call(make_call("1.1"), report=True)
    store.record_call(make_call("1.2", Outcome.PASSED_OWNER), report=False)
    rows = store.query("SELECT call_id, state FROM outbox")
    assert [tuple(row) for row in rows] == [(call_id, "queued")]


def test_failed_outbox_insert_rolls_back_call(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.sqlite")
    store.query("DROP TABLE outbox")
    with pytest.raises(StorageError):
        store.record_call(make_call("1.1"), report=True)
    assert store.recent_calls() == []


def test_recent_calls_newest_first(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.sqlite")
    for index in range(3):
        store.record_call(make_call(f"1.{index}"), report=False)
    assert [call.uniqueid for call in store.recent_calls(2)] == ["1.2", "1.1"]


def test_reopen_keeps_rows_and_schema(tmp_path: Path) -> None:
    open_store(tmp_path / "log.sqlite").record_call(make_call("1.1"), report=True)
    store = open_store(tmp_path / "log.sqlite")
    assert len(store.recent_calls()) == 1
    version = store.query("PRAGMA user_version")[0][0]
    assert version == len(_MIGRATIONS)


def test_unwritable_location_names_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot open database"):
        open_store(blocker / "log.sqlite")


def test_corrupt_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StorageError, match=r"log\.sqlite"):
        open_store(path)
    assert path.read_bytes().startswith(b"not a database")


@pytest.mark.parametrize("version", [-1, len(_MIGRATIONS) + 1, 99])
def test_unknown_schema_version_is_rejected(tmp_path: Path, version: int) -> None:
    path = tmp_path / "log.sqlite"
    open_store(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {version}")
    connection.close()

    with pytest.raises(StorageError, match=f"schema version {version} ") as error:
        open_store(path)
    assert "log.sqlite" in str(error.value)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == version
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    connection.close()
    assert tables[0] > 0


def test_connection_is_autocommit(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.sqlite")
    store.record_call(make_call("1.1"), report=False)
    other = sqlite3.connect(tmp_path / "log.sqlite")
    assert other.execute("SELECT count(*) FROM calls").fetchone()[0] == 1
