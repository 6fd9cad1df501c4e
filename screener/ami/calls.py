"""Place test calls into [screener-incoming] over AMI.

A call is an originated Local channel. Its ;2 half runs [screener-test-caller]
of asterisk-conf/extensions_screener_test.conf (answer, record what it hears
if asked, send timed DTMF keys, wait), and its ;1 half enters
[screener-incoming] as the phone line would. The stand-in handsets of that
file emit a ScreenerTestRang user event when they are dialed.

:func:`run_call` works against any Asterisk with those contexts loaded;
:func:`place_call` is the lab's version, which also records the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from screener.ami.client import (
    EVENT_CLASSES,
    AmiConnection,
    AmiError,
    AmiSettings,
    connect,
    message_dict,
)
from screener.ami.events import played_sound
from screener.lab import AMI_HOST, LabProcess
from screener.sounds.names import prompt_sound

log = logging.getLogger(__name__)

# Seconds allowed beyond a call's max_seconds for hangup and the recording.
CALL_MARGIN_SECONDS = 10.0
CALLER_CONTEXT = "screener-test-caller"
HANDSETS_CONTEXT = "screener-test-handsets"
# Dial strings of the stand-in handsets in HANDSETS_CONTEXT.
TEST_HANDSETS = f"Local/handsets@{HANDSETS_CONTEXT}"
TEST_HANDSETS_OTHER = f"Local/handsets-other@{HANDSETS_CONTEXT}"
# Prompts at whose start a prompt key is pressed: the two menus.
MENU_SOUNDS = frozenset({prompt_sound("main_menu"), prompt_sound("second_menu")})
# Seconds into a menu prompt before its key is pressed, as a person would
# after hearing the first words. Screener takes keys during the prompt.
PROMPT_KEY_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class HandsetRing:
    """One ScreenerTestRang event: the stand-in handsets were dialed and answered."""

    handset: str  # "handsets" or "handsets-other"
    caller_id_number: str
    caller_id_name: str
    channel: str


@dataclass
class CallReport:
    """The record of one test call, built from the AMI events of its channels."""

    call_id: str
    # The ;1 half, which ran [screener-incoming]: Screener's channel.
    line_channel: str
    line_uniqueid: str
    # The ;2 half, which ran [screener-test-caller].
    caller_channel: str
    caller_uniqueid: str
    rings: list[HandsetRing] = field(default_factory=list)
    keys_sent: list[str] = field(default_factory=list)
    # Hangup events of every channel of the call, by channel name.
    hangups: dict[str, dict[str, str]] = field(default_factory=dict)
    duration_seconds: float = 0.0
    # Last value of each channel variable set on the line half (VarSet events),
    # such as SCREENER_ACTION and AGISTATUS.
    line_variables: dict[str, str] = field(default_factory=dict)
    # Every AMI event of the call's channels, in arrival order.
    events: list[dict[str, str]] = field(default_factory=list)


@dataclass(kw_only=True)
class CallResult(CallReport):
    """A lab call's report and its recording."""

    # Host path of the WAV file with what the caller heard and sent (mixed).
    recording: Path


def lab_ami_settings(lab: LabProcess) -> AmiSettings:
    """Return the AMI login of a running lab Asterisk."""
    settings = lab.settings
    return AmiSettings(
        host=AMI_HOST,
        port=settings.ami_port,
        username=settings.ami_user,
        secret=settings.ami_secret,
        secret_source="the lab's AMI secret",
    )


def _ami(target: LabProcess | AmiSettings) -> AmiSettings:
    return target if isinstance(target, AmiSettings) else lab_ami_settings(target)


def agi_port(lab: LabProcess) -> int:
    """Return the FastAGI port that the lab's SCREENER_AGI points at.

    A test that needs a FastAGI server listens there on 127.0.0.1.
    """
    url = urlsplit(lab.settings.agi)
    if url.scheme != "agi" or url.port is None:
        raise ValueError(f"lab AGI target {lab.settings.agi!r} is not a FastAGI URL")
    return url.port


@contextlib.asynccontextmanager
async def ami_connection(
    target: LabProcess | AmiSettings, *, events: str = "on"
) -> AsyncIterator[Any]:
    """Log in to AMI and yield panoramisk's Manager; close it on exit."""
    async with connect(_ami(target), events=events) as connection:
        yield connection.manager


async def ami_command(target: LabProcess | AmiSettings, command: str) -> str:
    """Run an Asterisk CLI command over AMI and return its output."""
    async with ami_connection(target, events="off") as manager:
        response = await manager.send_command(command)
    if isinstance(response, list):
        response = response[-1]
    output = response.get("Output", "")
    if isinstance(output, list):
        return "\n".join(str(line) for line in output)
    return str(output)


async def get_global(target: LabProcess | AmiSettings, name: str) -> str:
    """Return the value of a dialplan global variable ("" if unset)."""
    async with connect(_ami(target)) as connection:
        response = await connection.action({"Action": "Getvar", "Variable": name})
    return response[0].get("Value", "")


async def set_global(target: LabProcess | AmiSettings, name: str, value: str) -> None:
    """Set a dialplan global variable, such as SCREENER_AGI.

    The lab runs for the whole test session, so prefer override_global, which
    restores the old value.
    """
    async with connect(_ami(target)) as connection:
        await connection.action({"Action": "Setvar", "Variable": name, "Value": value})


@contextlib.asynccontextmanager
async def override_global(
    target: LabProcess | AmiSettings, name: str, value: str
) -> AsyncIterator[None]:
    """Set a dialplan global variable for the duration of a with block."""
    previous = await get_global(target, name)
    await set_global(target, name, value)
    try:
        yield
    finally:
        await set_global(target, name, previous)


async def place_call(
    lab: LabProcess,
    *,
    keys: list[tuple[float, str]],
    caller_id: str,
    max_seconds: float,
) -> CallResult:
    """Call [screener-incoming] of the lab, record it, and return at the end.

    keys: (delay, digits) pairs; each delay is in seconds after the previous
    key, or after the caller half answered for the first key.
    caller_id: "Name <number>", the caller ID Screener's channel receives.
    max_seconds: the caller hangs up this many seconds after answering.
    Raises TimeoutError if the call or its recording does not finish within
    max_seconds plus CALL_MARGIN_SECONDS.
    """
    settings = lab.settings
    call_id = new_call_id()
    recording_prefix = settings.recording_dir / call_id
    recording = settings.host_path(recording_prefix.with_suffix(".wav"))
    recording_done = settings.host_path(recording_prefix.with_suffix(".done"))
    started = time.monotonic()
    report = await run_call(
        lab_ami_settings(lab),
        call_id=call_id,
        timed_keys=keys,
        caller_id=caller_id,
        max_seconds=max_seconds,
        recording_prefix=recording_prefix,
    )
    await _wait_for_file(recording_done, started + max_seconds + CALL_MARGIN_SECONDS)
    values = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    return CallResult(**values, recording=recording)


def new_call_id() -> str:
    """Return a fresh id for a test call, which names its channels' uniqueids."""
    return uuid.uuid4().hex[:12]


async def run_call(
    ami: AmiSettings,
    *,
    caller_id: str,
    max_seconds: float,
    call_id: str | None = None,
    timed_keys: Sequence[tuple[float, str]] = (),
    prompt_keys: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    recording_prefix: PurePosixPath | None = None,
) -> CallReport:
    """Originate a test call into [screener-incoming] and follow it to the end.

    timed_keys: (delay, digits) pairs that the caller's dialplan sends.
    prompt_keys: digits sent with the PlayDTMF action, one entry per menu
    prompt, PROMPT_KEY_DELAY_SECONDS after that prompt starts.
    variables: extra channel variables for both halves, such as
    SCREENER_HANDSETS.
    recording_prefix: the path, inside Asterisk's file system and without
    extension, that the caller half records to.
    Raises AmiError when the Originate fails and TimeoutError when channels
    remain after max_seconds plus CALL_MARGIN_SECONDS.
    """
    call_id = call_id or new_call_id()
    report = CallReport(
        call_id=call_id,
        line_channel="",
        line_uniqueid=f"screener-test-{call_id}-line",
        caller_channel="",
        caller_uniqueid=f"screener-test-{call_id}-caller",
    )
    channel_variables = {
        "SCREENER_TEST_ID": call_id,
        "SCREENER_TEST_MAX_SECONDS": f"{max_seconds:g}",
        "SCREENER_TEST_KEY_COUNT": str(len(timed_keys)),
    }
    for index, (delay, digits) in enumerate(timed_keys, start=1):
        channel_variables[f"SCREENER_TEST_KEY_DELAY_{index}"] = f"{delay:g}"
        channel_variables[f"SCREENER_TEST_KEY_{index}"] = digits
    if recording_prefix is not None:
        channel_variables["SCREENER_TEST_RECORDING"] = str(recording_prefix)
    channel_variables.update(variables or {})

    events: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    def collect(_manager: Any, message: Any) -> None:
        event = message_dict(message)
        # Every channel of the call, the handsets' too, shares the linked id
        # of the line half, which the Originate names.
        if event.get("Linkedid") == report.line_uniqueid:
            events.put_nowait(event)

    deadline = time.monotonic() + max_seconds + CALL_MARGIN_SECONDS
    started = time.monotonic()
    async with connect(ami, events=EVENT_CLASSES) as connection:
        connection.manager.register_event("*", collect)
        await connection.action(
            {
                "Action": "Originate",
                "Channel": f"Local/s@{CALLER_CONTEXT}",
                "Context": "screener-incoming",
                "Exten": "s",
                "Priority": "1",
                "CallerID": caller_id,
                "ChannelId": report.line_uniqueid,
                "OtherChannelId": report.caller_uniqueid,
                "Timeout": "10000",
                "Async": "true",
                "Variable": [f"{k}={v}" for k, v in channel_variables.items()],
            }
        )
        follower = _CallFollower(report, connection, list(prompt_keys))
        try:
            await follower.follow(events, deadline)
        finally:
            await follower.finish_keys()
    report.duration_seconds = time.monotonic() - started
    return report


class _CallFollower:
    """Records a call's events and presses the prompt keys on cue."""

    def __init__(
        self, report: CallReport, connection: AmiConnection, prompt_keys: list[str]
    ) -> None:
        self.report = report
        self.connection = connection
        self.prompt_keys = prompt_keys
        self.key_tasks: list[asyncio.Task[None]] = []

    async def follow(
        self, events: asyncio.Queue[dict[str, str]], deadline: float
    ) -> None:
        """Record events until every channel of the call has hung up."""
        report = self.report
        live_channels: set[str] = set()
        seen_any = False
        while not seen_any or live_channels:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"call {report.call_id} still has channels {sorted(live_channels)}"
                )
            if self.connection.lost.is_set():
                raise AmiError(f"lost the AMI connection during call {report.call_id}")
            try:
                event = await asyncio.wait_for(events.get(), min(remaining, 1.0))
            except TimeoutError:
                continue
            report.events.append(event)
            if event.get("Event") == "Newchannel":
                seen_any = True
                live_channels.add(event.get("Uniqueid", ""))
            elif event.get("Event") == "Hangup":
                live_channels.discard(event.get("Uniqueid", ""))
            self.record(event)

    def record(self, event: dict[str, str]) -> None:
        """Copy what ``event`` shows about the call into the report."""
        report = self.report
        name = event.get("Event", "")
        channel = event.get("Channel", "")
        uniqueid = event.get("Uniqueid", "")
        if uniqueid == report.line_uniqueid:
            report.line_channel = channel
        elif uniqueid == report.caller_uniqueid:
            report.caller_channel = channel
        if name == "VarSet" and uniqueid == report.line_uniqueid:
            report.line_variables[event.get("Variable", "")] = event.get("Value", "")
        elif name == "Hangup":
            report.hangups[channel] = event
        elif name == "AGIExecStart" and uniqueid == report.line_uniqueid:
            if played_sound(event.get("Command", "")) in MENU_SOUNDS:
                self.press_next_prompt_key()
        elif name == "UserEvent" and event.get("UserEvent") == "ScreenerTestRang":
            report.rings.append(
                HandsetRing(
                    handset=event.get("Handset", ""),
                    caller_id_number=event.get("HandsetCallerNum", ""),
                    caller_id_name=event.get("HandsetCallerName", ""),
                    channel=channel,
                )
            )
        elif name == "UserEvent" and event.get("UserEvent") == "ScreenerTestKey":
            report.keys_sent.append(event.get("Keys", ""))

    def press_next_prompt_key(self) -> None:
        if not self.prompt_keys:
            return
        digits = self.prompt_keys.pop(0)
        self.key_tasks.append(asyncio.create_task(self._press(digits)))

    async def _press(self, digits: str) -> None:
        await asyncio.sleep(PROMPT_KEY_DELAY_SECONDS)
        # Sent out of the caller half, the digit reaches the line half as
        # received DTMF, exactly like a key pressed on a phone.
        for digit in digits:
            # panoramisk 1.4 guesses that a response ending in "successfully
            # queued" starts a list and then fails on the missing Async
            # header, so this passes as_list=False for PlayDTMF.
            await self.connection.action(
                {
                    "Action": "PlayDTMF",
                    "Channel": self.report.caller_channel,
                    "Digit": digit,
                    "Duration": "100",
                },
                as_list=False,
            )
        self.report.keys_sent.append(digits)

    async def finish_keys(self) -> None:
        """Cancel key presses still waiting, as when the call ended first."""
        for task in self.key_tasks:
            task.cancel()
        for task in self.key_tasks:
            with contextlib.suppress(asyncio.CancelledError, AmiError):
                await task


async def _wait_for_file(path: Path, deadline: float) -> None:
    """Wait for the marker file that MixMonitor's command creates.

    Asterisk sends no event when MixMonitor closes its file after a hangup, so
    this polls the file system until the deadline.
    """
    while not path.exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"recording marker {path} did not appear")
        await asyncio.sleep(0.02)
