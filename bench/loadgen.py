"""A load generator that plays Asterisk's side of FastAGI.

Each session connects, sends an environment block and answers every command
with a scripted success reply, so the server walks the silent-caller flow:
ANSWER, then twice (tones, menu, WAIT FOR DIGIT), then goodbye, SET VARIABLE
and HANGUP. A session is complete when the server closes the connection, which
it does after logging the call. The generator is built on asyncio protocols
rather than streams, and bench/ runs it on uvloop, so that it costs less CPU
per command than the servers it measures and adds less delay of its own to
the times it measures.

The playback delay stands for the time Asterisk spends playing a file or
waiting for a key: STREAM FILE and WAIT FOR DIGIT are answered that long after
they arrive. After the HANGUP reply the generator does not send the ``HANGUP``
line that Asterisk sends on a real hang-up, because none of the servers reads
past its last reply.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

# The command verbs of the silent-caller flow with two menu rounds.
SILENT_CALLER_FLOW = (
    b"ANSWER",
    b"STREAM FILE",
    b"STREAM FILE",
    b"WAIT FOR DIGIT",
    b"STREAM FILE",
    b"STREAM FILE",
    b"WAIT FOR DIGIT",
    b"STREAM FILE",
    b"SET VARIABLE",
    b"HANGUP",
)
DELAYED_VERBS = (b"STREAM FILE", b"WAIT FOR DIGIT")
REPLIES = {
    b"ANSWER": b"200 result=0\n",
    b"STREAM FILE": b"200 result=0 endpos=8000\n",
    b"WAIT FOR DIGIT": b"200 result=0\n",
    b"SET VARIABLE": b"200 result=1\n",
    b"HANGUP": b"200 result=1\n",
}
# A session that has not finished in this many seconds counts as an error.
SESSION_TIMEOUT = 60.0

_session_numbers = itertools.count(1)


def environment_block(number: int) -> bytes:
    """Return the environment block Asterisk 22 sends for a Local channel."""
    variables = {
        "agi_network": "yes",
        "agi_network_script": "screener",
        "agi_request": "agi://127.0.0.1/screener",
        "agi_channel": f"Local/s@screener-incoming-{number:08x};1",
        "agi_language": "en",
        "agi_type": "Local",
        "agi_uniqueid": f"1700000000.{number}",
        "agi_version": "22.0.0",
        "agi_callerid": "+15555550123",
        "agi_calleridname": "Bench Caller",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "unknown",
        "agi_rdnis": "unknown",
        "agi_context": "screener-incoming",
        "agi_extension": "s",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
    }
    lines = [f"{name}: {value}\n" for name, value in variables.items()]
    return ("".join(lines) + "\n").encode()


@dataclass
class Results:
    """Figures collected over one load run; times are in seconds."""

    sessions: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    connect: list[float] = field(default_factory=list)
    first_tone: list[float] = field(default_factory=list)
    turnaround: list[float] = field(default_factory=list)
    active: int = 0
    max_active: int = 0

    def error(self, kind: str) -> None:
        """Count one failed session."""
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


class AgiSession(asyncio.Protocol):
    """Asterisk's side of one FastAGI session."""

    def __init__(
        self, results: Results, delay: float, started: float, done: asyncio.Future[None]
    ) -> None:
        self._results = results
        self._delay = delay
        self._started = started
        self._done = done
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._step = 0
        self._reply_sent_at: float | None = None
        self._failure: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._results.connect.append(time.perf_counter() - self._started)
        self._transport.write(environment_block(next(_session_numbers)))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._command(line, now)

    def _command(self, line: bytes, now: float) -> None:
        if self._step >= len(SILENT_CALLER_FLOW):
            self._fail("command after HANGUP")
            return
        verb = SILENT_CALLER_FLOW[self._step]
        if not line.startswith(verb):
            self._fail(f"expected {verb.decode()}")
            return
        if self._reply_sent_at is not None:
            self._results.turnaround.append(now - self._reply_sent_at)
            self._reply_sent_at = None
        if self._step == 1:
            self._results.first_tone.append(now - self._started)
        self._step += 1
        if self._delay > 0 and verb in DELAYED_VERBS:
            self._loop.call_later(self._delay, self._reply, REPLIES[verb])
        else:
            self._reply(REPLIES[verb])

    def _reply(self, reply: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(reply)
        if self._step < len(SILENT_CALLER_FLOW):
            self._reply_sent_at = time.perf_counter()

    def _fail(self, kind: str) -> None:
        if self._failure is None:
            self._failure = kind
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._failure is None and exc is not None:
            self._failure = type(exc).__name__
        if self._failure is None and self._step != len(SILENT_CALLER_FLOW):
            self._failure = f"closed after {self._step} commands"
        if self._failure is None:
            self._results.sessions += 1
        else:
            self._results.error(self._failure)
        if not self._done.done():
            self._done.set_result(None)


async def run_session(port: int, delay: float, results: Results) -> None:
    """Run one silent-caller session against 127.0.0.1:``port``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    started = time.perf_counter()
    results.active += 1
    results.max_active = max(results.max_active, results.active)
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(SESSION_TIMEOUT):
            transport, _protocol = await loop.create_connection(
                lambda: AgiSession(results, delay, started, done), "127.0.0.1", port
            )
            await done
    except TimeoutError:
        results.error("timed out")
        if transport is not None:
            cast(asyncio.Transport, transport).abort()
    except OSError as exc:
        results.error(type(exc).__name__)
    finally:
        results.active -= 1


async def closed_loop(
    port: int,
    concurrency: int,
    delay: float,
    duration: float,
    ramp: float,
    on_tick: Callable[[], None] | None = None,
    results: Results | None = None,
) -> Results:
    """Keep ``concurrency`` sessions running, each worker back to back.

    Workers start spread over ``ramp`` seconds and start no new session after
    ``duration`` seconds; the run ends once the last session finishes.
    """
    results = Results() if results is None else results
    deadline = time.perf_counter() + duration

    async def worker(index: int) -> None:
        await asyncio.sleep(ramp * index / concurrency)
        while time.perf_counter() < deadline:
            await run_session(port, delay, results)

    ticker = _start_ticker(on_tick)
    try:
        await asyncio.gather(*(worker(index) for index in range(concurrency)))
    finally:
        ticker.cancel()
    return results


async def open_loop(
    port: int,
    rate: float,
    delay: float,
    duration: float,
    on_tick: Callable[[], None] | None = None,
    results: Results | None = None,
) -> Results:
    """Start sessions at ``rate`` per second for ``duration`` seconds."""
    results = Results() if results is None else results
    loop = asyncio.get_running_loop()
    count = int(rate * duration)
    start = loop.time()
    tasks: list[asyncio.Task[None]] = []
    ticker = _start_ticker(on_tick)
    try:
        for index in range(count):
            wake = start + index / rate
            if wake > loop.time():
                await asyncio.sleep(wake - loop.time())
            tasks.append(asyncio.create_task(run_session(port, delay, results)))
        await asyncio.gather(*tasks)
    finally:
        ticker.cancel()
    return results


def _start_ticker(on_tick: Callable[[], None] | None) -> asyncio.Task[None]:
    async def tick() -> None:
        while True:
            await asyncio.sleep(0.1)
            if on_tick is not None:
                on_tick()

    return asyncio.create_task(tick())
