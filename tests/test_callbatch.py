"""Batched call logging of the FastAGI server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from screener.callbatch import BatchRecorder, WalCheckpointer
from screener.errors import StorageError
from screener.records import CallRecord
from screener.storage import Store, open_store
from tests.test_storage import make_call


def record_trap(store: Store) -> BatchRecorder:
    def record(call: CallRecord) -> None:
        store.record_call(call, report=True)

    return BatchRecorder(store, record, interval=0.01)


async def test_batch_commits_after_interval(tmp_path: Path) -> None:
    store = open_store(tmp_path / "calls.sqlite")
    batch = record_trap(store)
    batch(make_call("a"))
    batch(make_call("b"))
    assert store.call_by_uniqueid("a") is None
    await asyncio.sleep(0.05)
    assert store.call_by_uniqueid("a") is not None
    assert store.call_by_uniqueid("b") is not None
    assert store.outbox_counts()["queued"] == 2


async def test_failing_call_spares_batch(tmp_path: Path) -> None:
    store = open_store(tmp_path / "calls.sqlite")

    def record(call: CallRecord) -> None:
        with store.transaction() as connection:
            store.record_call(call, report=True)
            if call.uniqueid == "bad":
                connection.execute("INSERT INTO no_such_table VALUES (1)")

    batch = BatchRecorder(store, record)
    for uniqueid in ("a", "bad", "b"):
        batch(make_call(uniqueid))
    batch.flush()
    assert store.call_by_uniqueid("a") is not None
    assert store.call_by_uniqueid("b") is not None
    assert store.call_by_uniqueid("bad") is None
    assert store.outbox_counts()["queued"] == 2


async def test_flush_wakes_listener(tmp_path: Path) -> None:
    store = open_store(tmp_path / "calls.sqlite")
    flushes: list[int] = []

    def record(call: CallRecord) -> None:
        store.record_call(call, report=True)

    def on_flushed() -> None:
        flushes.append(store.outbox_counts()["queued"])

    batch = BatchRecorder(store, record, on_flushed=on_flushed)
    batch(make_call("a"))
    batch.flush()
    batch.flush()
    assert flushes == [1]


def test_nested_transaction_rolls_back_alone(tmp_path: Path) -> None:
    store = open_store(tmp_path / "calls.sqlite")
    with store.transaction():
        store.record_call(make_call("kept"), report=False)
        with pytest.raises(StorageError), store.transaction() as connection:
            store.record_call(make_call("dropped"), report=False)
            connection.execute("INSERT INTO no_such_table VALUES (1)")
    assert store.call_by_uniqueid("kept") is not None
    assert store.call_by_uniqueid("dropped") is None


async def test_checkpointer_copies_log_to_database(tmp_path: Path) -> None:
    database = tmp_path / "calls.sqlite"
    store = open_store(database)
    checkpointer = WalCheckpointer(store, interval=0.01)
    checkpointer.start()
    for number in range(200):
        store.record_call(make_call(f"call-{number}"), report=True)
    size_before = database.stat().st_size
    task = asyncio.create_task(checkpointer.run())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    checkpointer.close()
    assert database.stat().st_size > size_before
    assert store.call_by_uniqueid("call-199") is not None


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_checkpointer_keeps_open_files_steady(tmp_path: Path) -> None:
    # A soak of the server showed one more open file after the first
    # checkpoint: SQLite keeps a closed connection's descriptor while another
    # connection of the process holds locks on the same database.
    store = open_store(tmp_path / "calls.sqlite")
    checkpointer = WalCheckpointer(store, interval=0.01)
    checkpointer.start()
    files_before = _open_files()
    task = asyncio.create_task(checkpointer.run())
    for number in range(5):
        store.record_call(make_call(f"call-{number}"), report=True)
        await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _open_files() == files_before
    checkpointer.close()
    assert _open_files() == files_before - 1
