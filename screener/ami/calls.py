"""Place test calls into [screener-incoming] of the lab Asterisk over AMI.

A call is an originated Local channel. Its ;2 half runs [screener-lab-caller]
of the lab dialplan (answer, record what it hears, send DTMF keys, wait), and
its ;1 half enters [screener-incoming] as the phone line would. The lab
handsets emit a ScreenerLabRang user event when they are dialed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from panoramisk import Manager

from screener.lab import AMI_HOST, LabProcess

# Seconds allowed beyond a call's max_seconds for hangup and the recording.
CALL_MARGIN_SECONDS = 10.0


@dataclass(frozen=True)
class HandsetRing:
    """One ScreenerLabRang event: the lab handsets were dialed and answered."""

    handset: str  # "handsets" or "handsets-other"
    caller_id_number: str
    caller_id_name: str
    channel: str


@dataclass
class CallResult:
    """What happened on one test call."""

    call_id: str
    # The ;1 half, which ran [screener-incoming]: Screener's channel.
    line_channel: str
    line_uniqueid: str
    # The ;2 half, which ran [screener-lab-caller].
    caller_channel: str
    caller_uniqueid: str
    # Host path of the WAV file with what the caller heard and sent (mixed).
    recording: Path
    rings: list[HandsetRing] = field(default_factory=list)
    keys_sent: list[str] = field(default_factory=list)
    # Hangup events of every channel of the call, by channel name.
    hangups: dict[str, dict[str, str]] = field(default_factory=dict)
    duration_seconds: float = 0.0
    # Last value of each channel variable set on the line half (VarSet events),
    # such as SCREENER_ACTION and AGISTATUS.
    line_variables: dict[str, str] = field(default_factory=dict)
    # Every AMI event of the call's channels, in arrival order, for debugging.
    events: list[dict[str, str]] = field(default_factory=list)


def agi_port(lab: LabProcess) -> int:
    """Return the FastAGI port that the lab's SCREENER_AGI points at.

    A test that needs a FastAGI server listens there on 127.0.0.1.
    """
    url = urlsplit(lab.settings.agi)
    if url.scheme != "agi" or url.port is None:
        raise ValueError(f"lab AGI target {lab.settings.agi!r} is not a FastAGI URL")
    return url.port


def _event_dict(message: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in message.items()}


@contextlib.asynccontextmanager
async def ami_connection(
    lab: LabProcess, timeout_seconds: float = 10.0
) -> AsyncIterator[Manager]:
    """Connect and log in to the lab's AMI; close the connection on exit."""
    settings = lab.settings
    logged_in = asyncio.Event()
    manager = Manager(
        host=AMI_HOST,
        port=settings.ami_port,
        username=settings.ami_user,
        secret=settings.ami_secret,
        ping_delay=3600,
        on_login=lambda _manager: logged_in.set(),
    )
    manager.loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(manager.connect(), timeout_seconds)
        await asyncio.wait_for(logged_in.wait(), timeout_seconds)
        yield manager
    finally:
        manager.close()


async def ami_command(lab: LabProcess, command: str) -> str:
    """Run an Asterisk CLI command over AMI and return its output."""
    async with ami_connection(lab) as manager:
        response = await manager.send_command(command)
    if isinstance(response, list):
        response = response[-1]
    output = response.get("Output", "")
    if isinstance(output, list):
        return "\n".join(str(line) for line in output)
    return str(output)


async def get_global(lab: LabProcess, name: str) -> str:
    """Return the value of a dialplan global variable ("" if unset)."""
    async with ami_connection(lab) as manager:
        response = await manager.send_action({"Action": "Getvar", "Variable": name})
    if response.get("Response") != "Success":
        raise RuntimeError(f"Getvar {name} failed: {_event_dict(response)}")
    return str(response.get("Value", ""))


async def set_global(lab: LabProcess, name: str, value: str) -> None:
    """Set a dialplan global variable, such as SCREENER_AGI.

    The lab runs for the whole test session, so prefer override_global, which
    restores the old value.
    """
    async with ami_connection(lab) as manager:
        response = await manager.send_action(
            {"Action": "Setvar", "Variable": name, "Value": value}
        )
    if response.get("Response") != "Success":
        raise RuntimeError(f"Setvar {name} failed: {_event_dict(response)}")


@contextlib.asynccontextmanager
async def override_global(
    lab: LabProcess, name: str, value: str
) -> AsyncIterator[None]:
    """Set a dialplan global variable for the duration of a with block."""
    previous = await get_global(lab, name)
    await set_global(lab, name, value)
    try:
        yield
    finally:
        await set_global(lab, name, previous)


async def place_call(
    lab: LabProcess,
    *,
    keys: list[tuple[float, str]],
    caller_id: str,
    max_seconds: float,
) -> CallResult:
    """Call [screener-incoming] and return once every channel has hung up.

    keys: (delay, digits) pairs; each delay is in seconds after the previous
    key, or after the caller half answered for the first key.
    caller_id: "Name <number>", the caller ID Screener's channel receives.
    max_seconds: the caller hangs up this many seconds after answering.
    Raises TimeoutError if the call or its recording does not finish within
    max_seconds plus CALL_MARGIN_SECONDS.
    """
    settings = lab.settings
    call_id = uuid.uuid4().hex[:12]
    line_uniqueid = f"lab-{call_id}-line"
    caller_uniqueid = f"lab-{call_id}-caller"
    recording_dir = settings.host_path(settings.recording_dir)
    recording = recording_dir / f"{call_id}.wav"
    recording_done = recording_dir / f"{call_id}.done"

    variables = [
        f"LAB_CALL_ID={call_id}",
        f"LAB_MAX_SECONDS={max_seconds:g}",
        f"LAB_KEY_COUNT={len(keys)}",
    ]
    for index, (delay, digits) in enumerate(keys, start=1):
        variables.append(f"LAB_KEY_DELAY_{index}={delay:g}")
        variables.append(f"LAB_KEY_{index}={digits}")

    events: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    def collect(_manager: Manager, message: Any) -> None:
        event = _event_dict(message)
        # Every channel of the call, the handsets' too, shares the linked id
        # of the line half, which the originate names.
        if event.get("Linkedid") == line_uniqueid:
            events.put_nowait(event)

    deadline = time.monotonic() + max_seconds + CALL_MARGIN_SECONDS
    started = time.monotonic()
    async with ami_connection(lab) as manager:
        manager.register_event("*", collect)
        response = await manager.send_action(
            {
                "Action": "Originate",
                "Channel": "Local/s@screener-lab-caller",
                "Context": "screener-incoming",
                "Exten": "s",
                "Priority": "1",
                "CallerID": caller_id,
                "ChannelId": line_uniqueid,
                "OtherChannelId": caller_uniqueid,
                "Timeout": "10000",
                "Async": "true",
                "Variable": variables,
            }
        )
        messages = response if isinstance(response, list) else [response]
        if not any(m.get("Response") == "Success" for m in messages):
            raise RuntimeError(
                f"Originate failed: {[_event_dict(m) for m in messages]}"
            )
        result = CallResult(
            call_id=call_id,
            line_channel="",
            line_uniqueid=line_uniqueid,
            caller_channel="",
            caller_uniqueid=caller_uniqueid,
            recording=recording,
        )
        await _follow_call(result, events, deadline)

    await _wait_for_file(recording_done, deadline)
    result.duration_seconds = time.monotonic() - started
    return result


async def _follow_call(
    result: CallResult, events: asyncio.Queue[dict[str, str]], deadline: float
) -> None:
    """Record the call's events until every channel of it has hung up."""
    live_channels: set[str] = set()
    seen_any = False
    while not seen_any or live_channels:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"call {result.call_id} still has channels {sorted(live_channels)}"
            )
        try:
            event = await asyncio.wait_for(events.get(), remaining)
        except TimeoutError:
            continue
        result.events.append(event)
        name = event.get("Event", "")
        channel = event.get("Channel", "")
        uniqueid = event.get("Uniqueid", "")
        if uniqueid == result.line_uniqueid:
            result.line_channel = channel
        elif uniqueid == result.caller_uniqueid:
            result.caller_channel = channel
        if name == "Newchannel":
            seen_any = True
            live_channels.add(uniqueid)
        elif name == "VarSet" and uniqueid == result.line_uniqueid:
            result.line_variables[event.get("Variable", "")] = event.get("Value", "")
        elif name == "Hangup":
            live_channels.discard(uniqueid)
            result.hangups[channel] = event
        elif name == "UserEvent" and event.get("UserEvent") == "ScreenerLabRang":
            result.rings.append(
                HandsetRing(
                    handset=event.get("Handset", ""),
                    caller_id_number=event.get("HandsetCallerNum", ""),
                    caller_id_name=event.get("HandsetCallerName", ""),
                    channel=channel,
                )
            )
        elif name == "UserEvent" and event.get("UserEvent") == "ScreenerLabKey":
            result.keys_sent.append(event.get("Keys", ""))


async def _wait_for_file(path: Path, deadline: float) -> None:
    """Wait for the marker file that MixMonitor's command creates.

    Asterisk sends no event when MixMonitor closes its file after a hangup, so
    this polls the file system until the deadline.
    """
    while not path.exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"recording marker {path} did not appear")
        await asyncio.sleep(0.02)
