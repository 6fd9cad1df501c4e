"""Run `screener serve` as its own process beside the lab Asterisk."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from screener.lab import free_port

__all__ = ["free_port", "screener_serve", "wait_for_port"]

SERVER_START_SECONDS = 15.0
SERVER_STOP_SECONDS = 15.0


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the server listens, failing the test if it exits first."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"screener serve exited early:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"screener serve did not listen within {SERVER_START_SECONDS} s")


@contextlib.contextmanager
def screener_serve(config: Path, port: int, log: Path) -> Iterator[None]:
    """Run `screener --config CONFIG serve` until the block ends."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "screener", "--config", str(config), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, log)
        yield
    finally:
        process.terminate()
        process.wait(timeout=SERVER_STOP_SECONDS)
