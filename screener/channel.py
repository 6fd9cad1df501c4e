"""The abstract telephone channel the call flow talks to.

The flow never sees AGI, sockets or pyst2: it calls these verbs, and each
transport (FastAGI, classic AGI, a test double) implements them. A hang-up
surfaces as :class:`screener.errors.ChannelHungUp` from whichever verb was
running when the caller left.
"""

from __future__ import annotations

# typing is not imported at run time, for classic AGI's start-up (see
# screener.record). mypy treats any name TYPE_CHECKING as true, and at run
# time a protocol class is a plain base class that nothing instantiates.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

# Every key a phone can send, so that any key interrupts a prompt and the flow,
# not Asterisk, decides whether the key was valid.
ALL_KEYS = "0123456789*#"


class Channel(Protocol):
    """One call, as the call flow drives it."""

    async def answer(self) -> None:
        """Answer the call (take the line off-hook)."""

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play ``sound`` (a path without extension); return the key that cut it."""

    async def wait_for_digit(self, seconds: float) -> str | None:
        """Wait up to ``seconds`` for a key; return it, or None on timeout."""

    async def set_variable(self, name: str, value: str) -> None:
        """Set a channel variable that the dialplan reads after the session."""

    async def hangup(self) -> None:
        """Hang up the call."""
