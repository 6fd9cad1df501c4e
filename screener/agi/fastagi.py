"""The FastAGI server: AGI sessions over TCP, one asyncio task per call.

Asterisk's ``AGI(agi://host:port)`` connects, sends the environment block and
then exchanges one command and one reply at a time. Every read here is bounded
in size and time, end of file means "the caller hung up", and a peer that
misbehaves costs one WARNING line and its own connection, never the loop.

The connection is an :class:`asyncio.BufferedProtocol` rather than a stream
pair: it splits lines as bytes arrive and hands each reply straight to the
waiting command, with one timer per command. Streams cost about twice the CPU per
command (measured with bench/, which compares this server with panoramisk's).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from screener.agi.channel import AgiChannel
from screener.agi.protocol import (
    HANGUP_LINE,
    MAX_LINE_BYTES,
    MAX_USAGE_LINES,
    Environment,
    EnvironmentParser,
    Reply,
    Status,
    is_usage_continuation,
    parse_reply_line,
)
from screener.config import Config
from screener.errors import ChannelHungUp, ProtocolError
from screener.lists.features import FeatureHandler, feature_name
from screener.lists.rules import CallerLists
from screener.session import Recorder, run_session

log = logging.getLogger(__name__)

# Asterisk writes the whole environment block at once; a peer that takes
# longer than this is not Asterisk, or is stuck.
ENVIRONMENT_TIMEOUT = 5.0
# Calls served at once; past this a connection is closed at once, and the
# dialplan rings the handsets (fail-open) rather than queue a caller.
MAX_SESSIONS = 4096
# Open files kept free for the database, the log and the listening socket.
# The event loop resets a connection past the limit on open files without a
# log line, so the server rejects connections before that, with a WARNING.
RESERVED_FILES = 64
# The limit on open files that lets the server hold MAX_SESSIONS calls.
OPEN_FILES_NEEDED = MAX_SESSIONS + RESERVED_FILES
# Connections the kernel queues before the server accepts them. With
# asyncio's default of 100, a burst of calls overflows the queue, and each
# lost handshake is retried after 1, 3 or 7 s by Linux's SYN retransmission
# (measured with bench/, 1,000 calls at once).
# Linux caps this at net.core.somaxconn.
LISTEN_BACKLOG = MAX_SESSIONS
# Lines received but not yet read. Asterisk sends one reply per command (plus
# a HANGUP line), or a 520 usage reply of up to MAX_USAGE_LINES lines. The
# margin on top is generous, and a longer backlog is a peer flooding us.
MAX_PENDING_LINES = MAX_USAGE_LINES + 28
# On stop, calls in progress get this long to finish. The rest are then
# failed, so that the dialplan rings the handsets, well within systemd's
# default stop timeout of 90 s.
SHUTDOWN_GRACE_SECONDS = 20.0
# Failed calls end at once, and this bounds the wait for their last writes.
ABANDON_WAIT_SECONDS = 5.0
# Size of the receive buffer that all connections share. A plain Protocol
# would have asyncio allocate 256 KiB per read (an mmap, an mremap and a
# munmap each time, about 12% of the server's CPU under load in bench/).
RECEIVE_BUFFER_BYTES = 64 * 1024
# Bad session starts logged per window; the rest are counted, so a flood of
# broken connections cannot fill the disk with log lines.
MAX_WARNINGS_PER_WINDOW = 20
WARNING_WINDOW_SECONDS = 60.0


def allowed_sessions() -> int:
    """Raise the soft limit on open files if needed; return the calls it allows.

    Each call uses one socket. The soft limit is raised up to the hard
    limit, so a systemd default of 1024 does not cap the server near 1,000
    calls when the hard limit allows MAX_SESSIONS.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and soft < OPEN_FILES_NEEDED:
        raised = (
            OPEN_FILES_NEEDED if hard == unlimited else min(OPEN_FILES_NEEDED, hard)
        )
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == unlimited:
        return MAX_SESSIONS
    return max(1, min(MAX_SESSIONS, soft - RESERVED_FILES))


class AgiConnection(asyncio.BufferedProtocol):
    """One FastAGI connection: line framing, the environment, and replies.

    asyncio reads into the server's shared buffer and calls buffer_updated at
    once, with nothing run in between, so each read is copied out of the
    buffer before another connection's read can overwrite it.
    """

    def __init__(self, server: FastAgiServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._parser: EnvironmentParser | None = EnvironmentParser()
        self._lines: collections.deque[str] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._received_any = False
        self.peer = "?"
        self.tag = "?"

    # asyncio.BufferedProtocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self.peer = _peer_name(self._transport.get_extra_info("peername"))
        self.tag = self.peer
        if not self._server.admit(self):
            self._parser = None
            log.warning(
                "FastAGI %s: rejected, over %d calls at once",
                self.peer,
                self._server.max_sessions,
            )
            self._transport.close()
            return
        self._timer = self._loop.call_later(ENVIRONMENT_TIMEOUT, self._environment_late)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server.receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._server.receive_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if end - start > MAX_LINE_BYTES:
                self._reject(ProtocolError(f"line longer than {MAX_LINE_BYTES} bytes"))
                return
            line = buffer[start:end].decode("utf-8", "replace").rstrip("\r")
            start = end + 1
            if not self._take_line(line):
                return
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_LINE_BYTES:
            self._reject(ProtocolError(f"line longer than {MAX_LINE_BYTES} bytes"))

    def eof_received(self) -> bool:
        self._finish(ChannelHungUp("connection closed by peer"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection lost: {exc}" if exc else "connection closed by peer"
        self._finish(ChannelHungUp(reason))
        self._server.release(self)

    # Reading replies, for the session

    async def request(self, command: bytes, timeout: float) -> Reply:
        """Send ``command`` and return its reply within ``timeout`` seconds."""
        if self._lines:
            self._drop_stray_lines()
        if self._closed is not None:
            raise self._closed_error()
        assert self._transport is not None
        log.debug("[%s] >> %r", self.tag, command)
        self._transport.write(command)
        deadline = self._loop.time() + timeout
        while True:
            line = await self._next_line(deadline, timeout)
            log.debug("[%s] << %r", self.tag, line)
            if line == HANGUP_LINE:
                raise ChannelHungUp("Asterisk reported HANGUP")
            reply = parse_reply_line(line)
            if reply.status is Status.TRYING:
                continue
            if reply.status is Status.USAGE and line.startswith("520-"):
                await self._skip_usage(deadline, timeout)
            return reply

    def _drop_stray_lines(self) -> None:
        """Discard lines that arrived while no command was waiting.

        Asterisk sends exactly one reply per command, so such a line is a
        peer's fault. Read as the next command's reply it would, for
        example, turn a stray "200 result=49" into the caller's key "1".
        """
        stray = [line for line in self._lines if line != HANGUP_LINE]
        hung_up = len(stray) < len(self._lines)
        self._lines.clear()
        if stray:
            log.warning(
                "[%s] dropped %d unexpected lines, first %r",
                self.tag,
                len(stray),
                stray[0][:80],
            )
        if hung_up:
            raise ChannelHungUp("Asterisk reported HANGUP")

    async def _skip_usage(self, deadline: float, timeout: float) -> None:
        for _ in range(MAX_USAGE_LINES):
            line = await self._next_line(deadline, timeout)
            if not is_usage_continuation(line):
                return
        raise ProtocolError(f"usage text exceeds {MAX_USAGE_LINES} lines")

    async def _next_line(self, deadline: float, timeout: float) -> str:
        while not self._lines:
            if self._closed is not None:
                raise self._closed_error()
            waiter = self._loop.create_future()
            self._waiter = waiter
            timer = self._loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if self._loop.time() >= deadline and not self._lines:
                raise ProtocolError(f"no reply within {timeout:.0f} s")
        return self._lines.popleft()

    def _closed_error(self) -> Exception:
        """Return a new exception like the one that closed the connection.

        Raising the stored one would attach its traceback to it, and the
        frames of that traceback refer back to this connection. Such a cycle
        waits for a full garbage collection, so connections reset in the
        middle of a call accumulated (about 6 KiB each, measured in waves of
        900 resets).
        """
        assert self._closed is not None
        return type(self._closed)(*self._closed.args)

    def close(self) -> None:
        """Close the connection; Asterisk then continues in the dialplan."""
        if self._transport is not None:
            self._transport.close()

    def abandon(self, reason: str) -> None:
        """Fail the session with ``reason`` and close, so the handsets ring."""
        # Not a bad session start, even when the environment is incomplete.
        self._parser = None
        self._finish(ProtocolError(reason))
        self.close()

    # Internals

    def _take_line(self, line: str) -> bool:
        """Handle one complete line; return False once the connection is done."""
        if self._parser is not None:
            return self._take_environment_line(line)
        if self._closed is not None:
            return False
        self._lines.append(line)
        if len(self._lines) > MAX_PENDING_LINES:
            self._reject(ProtocolError(f"over {MAX_PENDING_LINES} unread lines"))
            return False
        self._wake()
        return True

    def _take_environment_line(self, line: str) -> bool:
        assert self._parser is not None
        try:
            environment = self._parser.feed(line)
        except ProtocolError as exc:
            self._reject(exc)
            return False
        if environment is None:
            return True
        self._parser = None
        self._cancel_timer()
        self.tag = environment.uniqueid or self.peer
        self._server.start_session(self, environment)
        return True

    def _environment_late(self) -> None:
        self._reject(
            ProtocolError(
                f"no complete environment block within {ENVIRONMENT_TIMEOUT:.0f} s"
            )
        )

    def _reject(self, exc: ProtocolError) -> None:
        """Drop a peer that broke the protocol, with one WARNING line."""
        if self._closed is not None:
            return
        if self._parser is not None:
            self._server.warn_bad_start(self.peer, exc)
            self._parser = None
        self._finish(exc)
        if self._transport is not None:
            self._transport.abort()

    def _finish(self, exc: Exception) -> None:
        if self._closed is None:
            # Kept without its traceback, whose frames refer back to this
            # connection (see _closed_error).
            self._closed = exc.with_traceback(None)
        if self._parser is not None:
            if self._received_any or not isinstance(exc, ChannelHungUp):
                self._server.warn_bad_start(self.peer, exc)
            else:
                # Closed before sending a byte: a port check such as
                # `screener status` or a monitoring probe, not a broken peer.
                log.debug("FastAGI %s: closed before sending anything", self.peer)
            self._parser = None
            if self._transport is not None:
                self._transport.close()
        self._cancel_timer()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FastAgiServer:
    """Serves screening sessions to Asterisk over FastAGI."""

    def __init__(
        self,
        config: Config,
        record: Recorder,
        *,
        on_call_done: Callable[[], None] | None = None,
        lists: CallerLists | None = None,
        features: FeatureHandler | None = None,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._config = config
        self.max_sessions = max_sessions
        self._record = record
        self._on_call_done = on_call_done
        self._lists = lists
        self._features = features
        self._server: asyncio.Server | None = None
        self._connections: set[AgiConnection] = set()
        self._warning_window_start = time.monotonic()
        self._warnings_in_window = 0
        self._suppressed_warnings = 0
        self._sessions: set[asyncio.Task[None]] = set()
        self.receive_buffer = memoryview(bytearray(RECEIVE_BUFFER_BYTES))

    @property
    def port(self) -> int:
        """Return the port actually bound (useful when configured as 0)."""
        assert self._server is not None, "server not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind the listening socket."""
        server = self._config.server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AgiConnection(self),
            server.host,
            server.port,
            backlog=LISTEN_BACKLOG,
        )
        log.info(
            "FastAGI server listening on %s:%d (event loop: %s)",
            server.host,
            self.port,
            type(loop).__module__.split(".")[0],
        )

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None, "server not started"
        await self._server.serve_forever()

    async def close(
        self,
        grace: float = SHUTDOWN_GRACE_SECONDS,
        hurry: asyncio.Event | None = None,
    ) -> None:
        """Stop accepting and let the calls in progress finish.

        Calls still in progress after ``grace`` seconds, or once ``hurry`` is
        set, fail and their connections close: Asterisk then rings the
        handsets for them, and each still gets its call-log row.
        """
        if self._server is not None:
            self._server.close()
        await self._wait_for_sessions(grace, hurry)
        if self._sessions:
            log.warning(
                "%d calls still in progress; failing them so the dialplan"
                " rings the handsets",
                len(self._sessions),
            )
        for connection in list(self._connections):
            connection.abandon("the server is stopping")
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=ABANDON_WAIT_SECONDS)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("FastAGI server stopped")

    async def _wait_for_sessions(
        self, grace: float, hurry: asyncio.Event | None
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurried = loop.create_task(hurry.wait()) if hurry is not None else None
        try:
            while self._sessions and not (hurried is not None and hurried.done()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                waiting: set[asyncio.Future[Any]] = set(self._sessions)
                if hurried is not None:
                    waiting.add(hurried)
                await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            if hurried is not None:
                hurried.cancel()

    def warn_bad_start(self, peer: str, exc: Exception) -> None:
        """Log a peer that broke the session start, at a bounded rate.

        A flood of bad connections would otherwise write a line each; past
        the limit they are counted and reported once the minute is over.
        """
        now = time.monotonic()
        if now - self._warning_window_start >= WARNING_WINDOW_SECONDS:
            if self._suppressed_warnings:
                log.warning(
                    "FastAGI: %d more bad session starts in the last %.0f s",
                    self._suppressed_warnings,
                    now - self._warning_window_start,
                )
            self._warning_window_start = now
            self._warnings_in_window = 0
            self._suppressed_warnings = 0
        if self._warnings_in_window >= MAX_WARNINGS_PER_WINDOW:
            self._suppressed_warnings += 1
            return
        self._warnings_in_window += 1
        log.warning("FastAGI %s: bad session start: %s; connection closed", peer, exc)

    def admit(self, connection: AgiConnection) -> bool:
        """Register a new connection unless the server is full."""
        if len(self._connections) >= self.max_sessions:
            return False
        self._connections.add(connection)
        return True

    def release(self, connection: AgiConnection) -> None:
        """Forget a closed connection."""
        self._connections.discard(connection)

    def start_session(
        self, connection: AgiConnection, environment: Environment
    ) -> None:
        """Run the call flow for a connection whose environment has arrived."""
        task = asyncio.get_running_loop().create_task(
            self._run_session(connection, environment)
        )
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _run_session(
        self, connection: AgiConnection, environment: Environment
    ) -> None:
        try:
            channel = AgiChannel(connection)
            # A handset feature code names its feature in the script path,
            # agi://host:port/feature/NAME; screened calls have no path.
            feature = feature_name(environment)
            if feature is None:
                await run_session(
                    channel, environment, self._config, self._record, self._lists
                )
            elif self._features is None:
                log.warning("[%s] feature %r but no database", connection.tag, feature)
            else:
                await self._features.run(feature, channel, environment)
        finally:
            connection.close()
            if self._on_call_done is not None:
                self._on_call_done()


def _peer_name(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
