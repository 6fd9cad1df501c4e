"""``screener watch``: a live view of the calls on the line, from AMI events.

The watcher logs in, subscribes to the event classes of EVENT_CLASSES, and
feeds every event to a :class:`CallTracker`. When the connection drops, as
when Asterisk restarts, it reports that and reconnects with exponential backoff.
A rejected login ends the watch, because retrying cannot fix a wrong secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from screener.ami.client import (
    EVENT_CLASSES,
    AmiConnectError,
    AmiSettings,
    connect,
    message_dict,
)
from screener.ami.events import CallStage, CallTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Seconds between reconnect attempts: doubling from first up to maximum."""

    first: float = 1.0
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        """Return the wait before reconnect attempt ``attempt`` (from 1)."""
        return float(min(self.maximum, self.first * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Notice:
    """A change of the connection, shown between the call stages."""

    text: str
    connected: bool


async def watch(
    settings: AmiSettings,
    on_stage: Callable[[CallStage], None],
    on_notice: Callable[[Notice], None],
    *,
    backoff: Backoff | None = None,
) -> None:
    """Report call stages and connection changes until cancelled.

    Raise AmiLoginError (or AmiError for a missing privilege) at once; retry
    a refused or lost connection for ever.
    """
    backoff = backoff or Backoff()
    tracker = CallTracker()
    failures = 0
    ever_connected = False
    while True:
        try:
            async with connect(settings, events=EVENT_CLASSES) as connection:
                failures = 0
                verb = "reconnected to" if ever_connected else "connected to"
                ever_connected = True
                on_notice(
                    Notice(
                        f"{verb} Asterisk AMI at {settings.address}; watching "
                        "calls in screener-incoming",
                        connected=True,
                    )
                )

                def dispatch(_manager: Any, message: Any) -> None:
                    for stage in tracker.feed(message_dict(message)):
                        on_stage(stage)

                connection.manager.register_event("*", dispatch)
                await connection.lost.wait()
            if tracker.active:
                log.debug("forgetting %d calls in progress", tracker.active)
            tracker.forget_all()
            failures += 1
            delay = backoff.delay(failures)
            on_notice(
                Notice(
                    f"lost the connection to Asterisk at {settings.address} "
                    f"(restart or shutdown?); reconnecting in {delay:g} s",
                    connected=False,
                )
            )
        except AmiConnectError as exc:
            failures += 1
            delay = backoff.delay(failures)
            on_notice(Notice(f"{exc}; retrying in {delay:g} s", connected=False))
        await asyncio.sleep(delay)
