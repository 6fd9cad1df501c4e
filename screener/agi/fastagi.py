"""The FastAGI server: AGI sessions over TCP, one asyncio task per call.

Asterisk's ``AGI(agi://host:port)`` connects, sends the environment block and
then exchanges one command and one reply at a time. Every read here is bounded
in size and time, end of file means "the caller hung up", and a peer that
misbehaves costs one WARNING line and its own connection, never the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

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
from screener.session import Recorder, run_session

log = logging.getLogger(__name__)

# Asterisk writes the whole environment block at once; a peer that takes
# longer than this is not Asterisk, or is stuck.
ENVIRONMENT_TIMEOUT = 5.0
# Closing waits for the peer's acknowledgement only this long.
CLOSE_TIMEOUT = 2.0
# Calls served at once; past this a connection is closed at once, and the
# dialplan rings the handsets (fail-open) rather than queue a caller.
MAX_SESSIONS = 4096


class StreamTransport:
    """AGI commands and replies over an asyncio stream pair."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._tag = tag

    async def request(self, command: bytes, timeout: float) -> Reply:
        """Send ``command`` and return its reply within ``timeout`` seconds."""
        log.debug("[%s] >> %r", self._tag, command)
        self._writer.write(command)
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
                return await self._read_reply()
        except TimeoutError:
            raise ProtocolError(f"no reply within {timeout:.0f} s") from None
        except ConnectionError as exc:
            raise ChannelHungUp(f"connection lost: {exc}") from exc

    async def _read_reply(self) -> Reply:
        while True:
            line = await read_line(self._reader)
            log.debug("[%s] << %r", self._tag, line)
            if line == HANGUP_LINE:
                raise ChannelHungUp("Asterisk reported HANGUP")
            reply = parse_reply_line(line)
            if reply.status is Status.TRYING:
                continue
            if reply.status is Status.USAGE and line.startswith("520-"):
                await self._skip_usage()
            return reply

    async def _skip_usage(self) -> None:
        for _ in range(MAX_USAGE_LINES):
            if not is_usage_continuation(await read_line(self._reader)):
                return
        raise ProtocolError(f"usage text exceeds {MAX_USAGE_LINES} lines")


async def read_line(reader: asyncio.StreamReader) -> str:
    """Read one line, bounded by the reader's limit; EOF becomes a hang-up."""
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise ChannelHungUp("connection closed by peer") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"line longer than {MAX_LINE_BYTES} bytes") from None
    return raw.decode("utf-8", "replace").rstrip("\r\n")


async def read_environment(reader: asyncio.StreamReader) -> Environment:
    """Read the environment block, bounded in size and time."""
    parser = EnvironmentParser()
    try:
        async with asyncio.timeout(ENVIRONMENT_TIMEOUT):
            while True:
                environment = parser.feed(await read_line(reader))
                if environment is not None:
                    return environment
    except TimeoutError:
        raise ProtocolError(
            f"no complete environment block within {ENVIRONMENT_TIMEOUT:.0f} s"
        ) from None


class FastAgiServer:
    """Serves screening sessions to Asterisk over FastAGI."""

    def __init__(
        self,
        config: Config,
        record: Recorder,
        *,
        on_call_done: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._record = record
        self._on_call_done = on_call_done
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """Return the port actually bound (useful when configured as 0)."""
        assert self._server is not None, "server not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind the listening socket."""
        server = self._config.server
        self._server = await asyncio.start_server(
            self._accept, server.host, server.port, limit=MAX_LINE_BYTES
        )
        log.info("FastAGI server listening on %s:%d", server.host, self.port)

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None, "server not started"
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting and let the calls in progress finish."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        log.info("FastAGI server stopped")

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._serve_connection(reader, writer)
        finally:
            self._sessions.discard(task)
            await _close(writer)
            if self._on_call_done is not None:
                self._on_call_done()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = _peer_name(writer)
        if len(self._sessions) > MAX_SESSIONS:
            log.warning(
                "FastAGI %s: over %d calls at once; refused", peer, MAX_SESSIONS
            )
            return
        try:
            environment = await read_environment(reader)
        except (ProtocolError, ChannelHungUp) as exc:
            log.warning(
                "FastAGI %s: bad session start: %s; connection closed", peer, exc
            )
            return
        tag = environment.uniqueid or peer
        channel = AgiChannel(StreamTransport(reader, writer, tag))
        await run_session(channel, environment, self._config, self._record)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
