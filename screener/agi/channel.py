"""A :class:`screener.channel.Channel` spoken over any AGI transport.

The transport only moves lines: it sends a command and returns the parsed
reply, raising ChannelHungUp when it sees ``HANGUP`` or end of file. This class
turns replies into results and errors, so FastAGI and any other line-based
transport share one interpretation of the protocol.
"""

from __future__ import annotations

import logging
from typing import Protocol

from screener.agi.protocol import Reply, Status, build_command
from screener.errors import ChannelHungUp, CommandFailed

log = logging.getLogger(__name__)

# Quick commands (ANSWER, SET VARIABLE, HANGUP) reply at once; a peer silent
# for this long is stuck, and the call must not hang on it.
COMMAND_TIMEOUT = 10.0
# A prompt plays for at most a minute or so; past this the peer is stuck.
STREAM_TIMEOUT = 180.0
# Extra time allowed beyond a WAIT FOR DIGIT's own timeout.
WAIT_MARGIN = 10.0


class Transport(Protocol):
    """Sends one command line and returns Asterisk's reply to it."""

    async def request(self, command: bytes, timeout: float) -> Reply:
        """Send ``command`` and return its reply within ``timeout`` seconds."""
        ...


class AgiChannel:
    """The Channel verbs as AGI commands."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def answer(self) -> None:
        """Answer the call."""
        await self._run(build_command("ANSWER"))

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play ``sound``; return the key that interrupted it, if any."""
        command = build_command("STREAM FILE", sound, escape_digits, 0)
        reply = await self._run(command, STREAM_TIMEOUT)
        return await self._digit_or_failure(reply, f"STREAM FILE {sound!r}")

    async def wait_for_digit(self, seconds: float) -> str | None:
        """Wait up to ``seconds`` for a key."""
        milliseconds = max(1, round(seconds * 1000))
        command = build_command("WAIT FOR DIGIT", milliseconds)
        reply = await self._run(command, seconds + WAIT_MARGIN)
        return await self._digit_or_failure(reply, "WAIT FOR DIGIT")

    async def set_variable(self, name: str, value: str) -> None:
        """Set a channel variable."""
        await self._run(build_command("SET VARIABLE", name, value))

    async def hangup(self) -> None:
        """Hang up the call."""
        await self._run(build_command("HANGUP"))

    async def _run(self, command: bytes, timeout: float | None = None) -> Reply:
        limit = COMMAND_TIMEOUT if timeout is None else timeout
        reply = await self._transport.request(command, limit)
        if reply.status is Status.DEAD_CHANNEL:
            raise ChannelHungUp(f"channel is dead: {reply.text!r}")
        if reply.status is not Status.SUCCESS:
            verb = command.decode("utf-8", "replace").strip()
            raise CommandFailed(f"{verb!r} was rejected: {reply.text!r}")
        return reply

    async def _digit_or_failure(self, reply: Reply, command: str) -> str | None:
        if reply.result_int >= 0:
            return reply.digit()
        # -1 means either "the caller hung up" or "the command failed", such as
        # a missing sound file. A status query tells the two apart: a dead
        # channel answers 511 (or the transport has seen HANGUP).
        await self._run(build_command("CHANNEL STATUS"))
        raise CommandFailed(f"{command} failed: {reply.text!r}")
