"""The FastAGI server while another process holds the call log's write lock.

The classic AGI script, the list commands and ``mail retry`` all write to the
same SQLite file. While one of them holds the lock, a call that ends must
still hand its line back to the dialplan at once, the other calls must go on,
and the call's row must not be lost.
"""

from __future__ import annotations

import asyncio
import io
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from screener import cli
from screener.agi.fastagi import FastAgiServer
from screener.callbatch import BatchRecorder
from screener.config import parse
from screener.records import CallRecord
from screener.storage import Store, open_store

# The README promises SIT tones within 300 ms of the answer, so a stall of one
# second is already far too late.
MAX_STALL_SECONDS = 1.0
WAIT_SECONDS = 15.0
# Once the lock is free, a row still pending must reach the file this fast.
ROW_WAIT_SECONDS = 5.0


def environment(uniqueid: str) -> bytes:
    return (
        "agi_network: yes\n"
        "agi_channel: DAHDI/1-1\n"
        f"agi_uniqueid: {uniqueid}\n"
        "agi_callerid: 5550100123\n"
        "agi_calleridname: Pat Friend\n"
        "\n"
    ).encode()


def reply_to(command: bytes) -> bytes:
    """Press 1 during the tones, so the call ends after three commands."""
    if command.startswith(b"STREAM FILE"):
        return b"200 result=49 endpos=100\n"
    return b"200 result=1\n"


def read_line(reader: io.BufferedIOBase) -> bytes:
    return reader.readline()


@dataclass
class Timings:
    """What the peer measured, in seconds."""

    second_call_answer: float = 0.0
    first_call_close: float = 0.0


def place_two_calls(port: int) -> Timings:
    """Finish one call, start another at once, and time both (blocking I/O)."""
    timings = Timings()
    first = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
    with first, first.makefile("rb") as first_reader:
        first.sendall(environment("locked.1"))
        while (command := read_line(first_reader)) and not command.startswith(
            b"SET VARIABLE"
        ):
            first.sendall(reply_to(command))
        ended = time.monotonic()
        first.sendall(reply_to(command))

        second = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
        with second, second.makefile("rb") as second_reader:
            started = time.monotonic()
            second.sendall(environment("locked.2"))
            assert read_line(second_reader) == b"ANSWER\n"
            timings.second_call_answer = time.monotonic() - started

        assert read_line(first_reader) == b""
        timings.first_call_close = time.monotonic() - ended
    return timings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    instance = open_store(
        tmp_path / "log.sqlite", busy_timeout_ms=cli.SERVE_BUSY_TIMEOUT_MS
    )
    yield instance
    instance.close()


@pytest.fixture
def locked(store: Store) -> Iterator[Callable[[], None]]:
    """Hold the write lock from another connection until released."""
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    def release() -> None:
        if other.in_transaction:
            other.execute("ROLLBACK")

    yield release
    release()
    other.close()


@pytest.fixture
async def server(store: Store, tmp_path: Path) -> AsyncIterator[FastAgiServer]:
    config = parse({"server": {"port": 0}}, base_dir=tmp_path)

    def record(call: CallRecord) -> None:
        store.record_call(call, report=call.outcome.is_trap)

    # The same recorder `screener serve` uses.
    instance = FastAgiServer(config, BatchRecorder(store, record))
    await instance.start()
    yield instance
    await instance.close()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(ROW_WAIT_SECONDS):
        while not condition():
            await asyncio.sleep(0.02)


async def test_lock_stalls_no_call(
    server: FastAgiServer, locked: Callable[[], None]
) -> None:
    timings = await asyncio.to_thread(place_two_calls, server.port)
    assert timings.second_call_answer < MAX_STALL_SECONDS
    assert timings.first_call_close < MAX_STALL_SECONDS


async def test_lock_loses_no_row(
    server: FastAgiServer, store: Store, locked: Callable[[], None]
) -> None:
    await asyncio.to_thread(place_two_calls, server.port)
    locked()
    await until(lambda: store.call_by_uniqueid("locked.1") is not None)
    assert store.call_by_uniqueid("locked.2") is not None
