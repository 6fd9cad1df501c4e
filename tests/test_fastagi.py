"""The FastAGI server against scripted peers on loopback.

The peer here plays Asterisk's side line by line, including the ways a broken
or hostile peer can misbehave. The real Asterisk is the peer in tests/e2e.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import select
import socket
import struct
import subprocess
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from screener import cli
from screener import config as config_module
from screener.agi import fastagi
from screener.agi.fastagi import FastAgiServer
from screener.flow import Outcome, Stage
from screener.records import CallRecord

ENVIRONMENT = (
    b"agi_network: yes\n"
    b"agi_channel: DAHDI/1-1\n"
    b"agi_uniqueid: 1700000000.7\n"
    b"agi_callerid: 5550100123\n"
    b"agi_calleridname: ACME\n"
    b"\n"
)

Responder = Callable[[str], list[bytes]]


class Peer:
    """Plays Asterisk's side of one FastAGI session."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.commands: list[str] = []

    async def call(self, respond: Responder, environment: bytes = ENVIRONMENT) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(environment)
        while line := await reader.readline():
            command = line.decode().strip()
            self.commands.append(command)
            for reply in respond(command):
                writer.write(reply)
            await writer.drain()
        writer.close()


def press(keys: dict[str, bytes]) -> Responder:
    """Reply 200 to everything, and with a key to commands naming a sound."""

    def respond(command: str) -> list[bytes]:
        for sound, reply in keys.items():
            if sound in command:
                return [reply]
        if command.startswith("STREAM FILE") or command.startswith("WAIT FOR"):
            return [b"200 result=0 endpos=8000\n"]
        return [b"200 result=1\n"]

    return respond


@pytest.fixture
async def server() -> AsyncIterator[tuple[FastAgiServer, list[CallRecord]]]:
    config = config_module.parse({"server": {"port": 0}}, base_dir=Path("."))
    calls: list[CallRecord] = []
    instance = FastAgiServer(config, calls.append)
    await instance.start()
    yield instance, calls
    await instance.close()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_owner_key_sets_ring_action(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    await peer.call(press({"sit-ic": b"200 result=49 endpos=800\n"}))
    await until(lambda: len(calls) == 1)
    assert peer.commands[0] == "ANSWER"
    assert peer.commands[1].startswith(
        'STREAM FILE "/var/lib/asterisk/sounds/screener/sit-ic"'
    )
    assert 'SET VARIABLE "SCREENER_ACTION" "ring"' in peer.commands
    assert calls[0].outcome is Outcome.PASSED_OWNER
    assert calls[0].number == "+15550100123"


async def test_interim_trying_line_is_skipped(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    await peer.call(
        press({"sit-ic": b"100 result=0 Trying...\n200 result=49 endpos=800\n"})
    )
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.PASSED_OWNER


async def test_hangup_line_ends_call_with_stage(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    await peer.call(press({"main-menu": b"HANGUP\n200 result=-1 endpos=100\n"}))
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.TRAPPED_HANGUP
    assert calls[0].stage is Stage.MENU


async def test_dead_channel_511_ends_call(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    reply = b"511 Command Not Permitted on a dead channel or intercept routine\n"
    await peer.call(press({"sit-ic": reply}))
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.TRAPPED_HANGUP
    assert calls[0].stage is Stage.TONES


async def test_failed_sound_probes_then_fails_open(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    await peer.call(press({"sit-ic": b"200 result=-1 endpos=0\n"}))
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.FAILED
    assert "CHANNEL STATUS" in peer.commands
    assert not any("SCREENER_ACTION" in command for command in peer.commands)


async def test_usage_reply_is_read_whole(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    usage = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b"Usage: ANSWER\n"
        b"520 End of proper usage.\n"
    )
    await peer.call(press({"ANSWER": usage}))
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.FAILED
    assert peer.commands == ["ANSWER"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"agi_network: yes\nagi_chan", "closed by peer"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "invalid environment line"),
        (b"agi_x: " + b"y" * 20000 + b"\n", "longer than"),
        (b"".join(b"agi_v%d: %s\n" % (i, b"z" * 500) for i in range(40)), "exceeds"),
    ],
    ids=["disconnect", "garbage", "long-line", "oversized-block"],
)
async def test_bad_session_start_logs_one_warning(
    server: tuple[FastAgiServer, list[CallRecord]],
    caplog: pytest.LogCaptureFixture,
    payload: bytes,
    reason: str,
) -> None:
    instance, calls = server
    caplog.set_level(logging.WARNING)
    reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
    writer.write(payload)
    await writer.drain()
    if reason == "closed by peer":
        writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert reason in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert calls == []


async def test_stalled_peer_is_dropped_while_others_served(
    server: tuple[FastAgiServer, list[CallRecord]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fastagi, "ENVIRONMENT_TIMEOUT", 0.5)
    instance, calls = server
    stalled_reader, stalled_writer = await asyncio.open_connection(
        "127.0.0.1", instance.port
    )
    stalled_writer.write(b"agi_network: yes\n")
    cpu_before = time.process_time()
    started = time.monotonic()

    await Peer(instance.port).call(press({"sit-ic": b"200 result=49\n"}))
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.PASSED_OWNER

    async with asyncio.timeout(5):
        assert await stalled_reader.read() == b""
    elapsed = time.monotonic() - started
    assert elapsed < 3
    # A busy loop would burn about as much CPU as the wall time elapsed.
    assert time.process_time() - cpu_before < 0.5 * elapsed + 0.2
    assert any("environment block within" in r.getMessage() for r in caplog.records)
    stalled_writer.close()


async def test_silent_reply_times_out_command(
    server: tuple[FastAgiServer, list[CallRecord]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from screener.agi import channel as agi_channel

    monkeypatch.setattr(agi_channel, "COMMAND_TIMEOUT", 0.3)
    instance, calls = server

    def never_answer(command: str) -> list[bytes]:
        return []

    await Peer(instance.port).call(never_answer)
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.FAILED


async def test_extra_reply_is_not_read_as_key(
    server: tuple[FastAgiServer, list[CallRecord]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    # Two replies to the tones: the second would look like key 1 on the menu.
    await peer.call(
        press({"sit-ic": b"200 result=0 endpos=100\n200 result=49 endpos=1\n"})
    )
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.TRAPPED_SILENT
    assert any("unexpected lines" in r.getMessage() for r in caplog.records)


async def test_bad_start_flood_is_rate_limited(
    server: tuple[FastAgiServer, list[CallRecord]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    instance, _calls = server
    caplog.set_level(logging.WARNING)
    attempts = fastagi.MAX_WARNINGS_PER_WINDOW + 10
    for _ in range(attempts):
        reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
        writer.write(b"garbage\n")
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
    warnings = [r for r in caplog.records if "bad session start" in r.getMessage()]
    assert len(warnings) == fastagi.MAX_WARNINGS_PER_WINDOW


def test_serve_runs_on_uvloop() -> None:
    loop_modules: list[str] = []

    async def main() -> None:
        loop_modules.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    cli._run_event_loop(main())
    assert loop_modules == ["uvloop"]


async def test_silent_probe_logs_no_warning(
    server: tuple[FastAgiServer, list[CallRecord]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `screener status` and monitoring tools connect and close at once.
    instance, calls = server
    caplog.set_level(logging.DEBUG, logger="screener.agi.fastagi")
    _reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
    writer.close()
    await writer.wait_closed()
    await until(
        lambda: any("before sending anything" in r.getMessage() for r in caplog.records)
    )
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    assert calls == []


async def test_partial_environment_then_close_warns(
    server: tuple[FastAgiServer, list[CallRecord]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    instance, _calls = server
    _reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
    writer.write(b"agi_network: yes\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await until(
        lambda: any("bad session start" in r.getMessage() for r in caplog.records)
    )
    starts = [r for r in caplog.records if "bad session start" in r.getMessage()]
    assert len(starts) == 1
    assert starts[0].levelno == logging.WARNING


async def test_burst_of_connections_is_queued(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    # The server's loop does not run until the next await, so the kernel
    # alone completes these handshakes, as many as the listen backlog holds.
    # Past it, a handshake is retried only after a second or more.
    instance, _calls = server
    burst = 300
    sockets = [socket.socket() for _ in range(burst)]
    try:
        for sock in sockets:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", instance.port))
        poller = select.poll()
        for sock in sockets:
            poller.register(sock, select.POLLOUT)
        pending = {sock.fileno() for sock in sockets}
        deadline = time.monotonic() + 0.5
        while pending and time.monotonic() < deadline:
            for descriptor, _event in poller.poll(50):
                poller.unregister(descriptor)
                pending.discard(descriptor)
        assert len(pending) == 0
    finally:
        for sock in sockets:
            sock.close()


async def walk_to_first_tone(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Send the environment, reply to ANSWER and read the first STREAM FILE."""
    writer.write(ENVIRONMENT)
    assert (await reader.readline()).startswith(b"ANSWER")
    writer.write(b"200 result=0\n")
    assert (await reader.readline()).startswith(b"STREAM FILE")


async def start_stuck_call(port: int) -> asyncio.StreamWriter:
    """Start a call that replies to ANSWER and then never replies again."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await walk_to_first_tone(reader, writer)
    return writer


async def test_stop_fails_stuck_call_after_grace(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    writer = await start_stuck_call(instance.port)
    started = time.monotonic()
    await instance.close(grace=0.2)
    assert time.monotonic() - started < 3.0
    assert len(calls) == 1
    assert calls[0].outcome is Outcome.FAILED
    writer.close()


async def test_second_signal_fails_calls_at_once(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    writer = await start_stuck_call(instance.port)
    hurry = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, hurry.set)
    started = time.monotonic()
    await instance.close(grace=60.0, hurry=hurry)
    assert time.monotonic() - started < 3.0
    assert [call.outcome for call in calls] == [Outcome.FAILED]
    writer.close()


async def test_stop_lets_calls_finish_within_grace(
    server: tuple[FastAgiServer, list[CallRecord]],
) -> None:
    instance, calls = server
    peer = Peer(instance.port)
    call = asyncio.create_task(peer.call(press({"main-menu": b"200 result=49\n"})))
    await asyncio.sleep(0.05)
    await instance.close(grace=5.0)
    await call
    assert [c.outcome for c in calls] == [Outcome.PASSED_OWNER]


async def test_long_usage_reply_is_read_whole(
    server: tuple[FastAgiServer, list[CallRecord]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 520 usage text may run to MAX_USAGE_LINES lines, sent in one piece.
    instance, calls = server
    usage = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        + b"usage line\n" * 70
        + b"520 End of proper usage.\n"
    )
    await Peer(instance.port).call(press({"ANSWER": usage}))
    await until(lambda: len(calls) == 1)
    assert calls[0].outcome is Outcome.FAILED
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "rejected" in messages
    assert "unread lines" not in messages


LIMIT_PROBE = """
import resource
from screener.agi.fastagi import allowed_sessions

print(allowed_sessions(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def run_with_open_files_limit(soft: int, hard: int) -> tuple[int, int]:
    """Return allowed_sessions() and the soft limit after, under this limit."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    result = subprocess.run(
        [sys.executable, "-c", LIMIT_PROBE],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        check=True,
        timeout=30,
    )
    sessions, new_soft = result.stdout.split()
    return int(sessions), int(new_soft)


def test_open_files_limit_raised_to_hard() -> None:
    sessions, soft = run_with_open_files_limit(128, 10_000)
    assert sessions == fastagi.MAX_SESSIONS
    assert soft == fastagi.MAX_SESSIONS + fastagi.RESERVED_FILES


def test_low_hard_limit_caps_sessions() -> None:
    sessions, soft = run_with_open_files_limit(128, 128)
    assert sessions == 128 - fastagi.RESERVED_FILES
    assert soft == 128


async def test_connection_past_session_limit_rejected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_module.parse({"server": {"port": 0}}, base_dir=Path("."))
    calls: list[CallRecord] = []
    instance = FastAgiServer(config, calls.append, max_sessions=1)
    await instance.start()
    try:
        _reader, holder = await asyncio.open_connection("127.0.0.1", instance.port)
        await until(lambda: len(instance._connections) == 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        holder.close()
    finally:
        await instance.close(grace=0.1)
    rejected = [r for r in caplog.records if "over 1 calls at once" in r.getMessage()]
    assert len(rejected) == 1
    assert rejected[0].levelno == logging.WARNING


Dropper = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def reset_during_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await walk_to_first_tone(reader, writer)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def send_garbage(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"garbage\n")
    assert await reader.read() == b""
    writer.close()


@pytest.mark.parametrize("drop", [reset_during_stream, send_garbage])
async def test_dropped_connection_freed_without_collector(
    server: tuple[FastAgiServer, list[CallRecord]], drop: Dropper
) -> None:
    # A connection kept in a reference cycle lives until a full collection,
    # so thousands of reset calls grew the server by megabytes.
    instance, _calls = server
    gc.disable()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
        await until(lambda: len(instance._connections) == 1)
        connection = weakref.ref(next(iter(instance._connections)))
        await drop(reader, writer)
        await until(lambda: not instance._connections and not instance._sessions)
        await asyncio.sleep(0.05)
        assert connection() is None
    finally:
        gc.enable()


SERVE_WITHOUT_UVLOOP = """
import sys

sys.modules["uvloop"] = None  # as if it were not installed
from screener.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_serve_falls_back_to_asyncio(tmp_path: Path) -> None:
    config = tmp_path / "screener.toml"
    config.write_text(
        f'[server]\nport = 0\n[database]\npath = "{tmp_path / "calls.sqlite"}"\n'
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE_WITHOUT_UVLOOP, "-c", str(config), "serve"],
            stderr=log_file,
        )
        try:
            deadline = time.monotonic() + 20
            while "listening on" not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            process.terminate()
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "(event loop: asyncio)" in log_path.read_text()
