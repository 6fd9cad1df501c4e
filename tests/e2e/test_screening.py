"""Calls through the real Screener FastAGI server and the lab Asterisk."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from screener.lab import LabProcess
from screener.ami.calls import CallResult, agi_port, place_call

CALLER = '"Pat Example" <5551234567>'
SERVER_START_SECONDS = 15.0
# Bytes of a WAV header; a recording longer than this contains audio.
WAV_HEADER_BYTES = 44


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
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


@pytest.fixture(scope="module")
def screener_server(
    lab: LabProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Run `screener serve` on the lab's FastAGI port; yield its log file."""
    port = agi_port(lab)
    folder = tmp_path_factory.mktemp("screener")
    config = folder / "screener.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[database]\npath = "{folder / "calls.sqlite"}"\n\n'
        "[menu]\nrounds = 2\nwait_seconds = 3\n"
    )
    log = folder / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "screener", "--config", str(config), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log)
        yield log
    finally:
        process.terminate()
        process.wait(timeout=15)


def _assert_recorded(result: CallResult) -> None:
    assert result.recording.is_file()
    assert result.recording.stat().st_size > WAV_HEADER_BYTES


async def test_owner_key_rings_handsets(lab: LabProcess, screener_server: Path) -> None:
    result = await place_call(lab, keys=[(4.0, "1")], caller_id=CALLER, max_seconds=30)

    assert result.keys_sent == ["1"]
    assert result.line_variables["SCREENER_ACTION"] == "ring"
    assert [ring.handset for ring in result.rings] == ["handsets"]
    assert result.rings[0].caller_id_number == "5551234567"
    assert result.rings[0].caller_id_name == "Pat Example"
    _assert_recorded(result)


async def test_other_key_rings_distinctively(
    lab: LabProcess, screener_server: Path
) -> None:
    result = await place_call(
        lab, keys=[(4.0, "2"), (2.0, "1")], caller_id=CALLER, max_seconds=30
    )

    assert result.keys_sent == ["2", "1"]
    assert result.line_variables["SCREENER_ACTION"] == "ring-other"
    assert [ring.handset for ring in result.rings] == ["handsets-other"]
    assert result.rings[0].caller_id_number == "5551234567"
    _assert_recorded(result)


async def test_decoy_key_hangs_up(lab: LabProcess, screener_server: Path) -> None:
    max_seconds = 40.0
    result = await place_call(
        lab, keys=[(4.0, "2"), (2.0, "9")], caller_id=CALLER, max_seconds=max_seconds
    )

    assert result.keys_sent == ["2", "9"]
    assert result.line_variables["SCREENER_ACTION"] == "hangup"
    assert result.rings == []
    # Screener, not the caller's time limit, ended the call.
    assert result.duration_seconds < max_seconds
    _assert_recorded(result)


async def test_silence_repeats_then_hangs_up(
    lab: LabProcess, screener_server: Path
) -> None:
    max_seconds = 60.0
    result = await place_call(lab, keys=[], caller_id=CALLER, max_seconds=max_seconds)

    assert result.line_variables["SCREENER_ACTION"] == "hangup"
    assert result.rings == []
    assert result.duration_seconds < max_seconds
    _assert_recorded(result)
