"""Turn the AMI events of screened calls into the stages a person follows.

A call on the line is a channel that enters the ``screener-incoming`` context.
Its stages come from these events, each needing a read class in manager.conf:

    first event in screener-incoming   ringing          call
    AGIExecStart ANSWER                answered         agi
    AGIExecStart STREAM FILE sit-*     tones            agi
    AGIExecStart STREAM FILE main-menu menu (and the other prompts)
    DTMFEnd, Direction Received        key              dtmf
    VarSet SCREENER_ACTION             outcome          dialplan
    DialBegin / DialEnd                handsets         call
    Hangup                             hung up          call
"""

from __future__ import annotations

import enum
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from screener.flow import ACTION_VARIABLE
from screener.sounds.names import SIT_PREFIX

INCOMING_CONTEXT = "screener-incoming"


class StageKind(enum.StrEnum):
    """The kind of a stage of a screened call."""

    RINGING = "ringing"
    ANSWERED = "answered"
    TONES = "tones"
    PROMPT = "prompt"
    KEY = "key"
    OUTCOME = "outcome"
    HANDSETS = "handsets"
    HANDSETS_DONE = "handsets-done"
    HUNG_UP = "hung-up"


@dataclass(frozen=True)
class CallStage:
    """One stage of one call, as shown by ``screener watch``."""

    kind: StageKind
    # The prompt's sound name, the key, the action, the dialed channel...
    detail: str
    # Uniqueid and name of the channel in screener-incoming.
    uniqueid: str
    channel: str
    # Asterisk's event time (Unix seconds) when manager.conf sets
    # timestampevents, otherwise the time the event arrived.
    timestamp: float

    def describe(self) -> str:
        """Return a one-line description, without the time and the channel."""
        return _DESCRIPTIONS[self.kind].format(detail=self.detail)


_DESCRIPTIONS = {
    StageKind.RINGING: "ringing: call from {detail}",
    StageKind.ANSWERED: "answered by Screener",
    StageKind.TONES: "tones playing ({detail})",
    StageKind.PROMPT: "prompt playing: {detail}",
    StageKind.KEY: "key pressed: {detail}",
    StageKind.OUTCOME: "outcome: SCREENER_ACTION={detail}",
    StageKind.HANDSETS: "handsets ringing: {detail}",
    StageKind.HANDSETS_DONE: "handsets finished: {detail}",
    StageKind.HUNG_UP: "hung up ({detail})",
}


def played_sound(command: str) -> str | None:
    """Return the sound basename of an AGI ``STREAM FILE`` command, else None.

    Screener quotes every argument, as in
    ``STREAM FILE "/var/lib/asterisk/sounds/screener/main-menu" "0123456789*#" 0``.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) < 3 or [word.upper() for word in words[:2]] != ["STREAM", "FILE"]:
        return None
    return PurePosixPath(words[2]).name


def caller_id(event: Mapping[str, str]) -> str:
    """Return the caller ID of an event as ``"Name" <number>``."""
    number = event.get("CallerIDNum", "")
    name = event.get("CallerIDName", "")
    number = "" if number in ("", "<unknown>") else number
    name = "" if name in ("", "<unknown>") else name
    if name and number:
        return f'"{name}" <{number}>'
    return number or name or "an unknown number"


@dataclass
class _Call:
    channel: str
    answered: bool = False


class CallTracker:
    """Follows every call in screener-incoming through a stream of AMI events."""

    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}

    @property
    def active(self) -> int:
        """Return the number of calls seen ringing and not yet hung up."""
        return len(self._calls)

    def forget_all(self) -> None:
        """Drop every call, as after a lost connection, whose events are gone."""
        self._calls.clear()

    def feed(self, event: Mapping[str, str]) -> list[CallStage]:
        """Return the stages that ``event`` shows, in order (often none)."""
        name = event.get("Event", "")
        uniqueid = event.get("Uniqueid", "")
        stages: list[CallStage] = []
        call = self._calls.get(uniqueid)
        if call is None and event.get("Context") == INCOMING_CONTEXT and uniqueid:
            call = self._calls[uniqueid] = _Call(channel=event.get("Channel", ""))
            stages.append(_stage(StageKind.RINGING, caller_id(event), event, call))
        if call is None:
            return stages
        # Dial events name the line as Channel and Uniqueid, and the handsets
        # as DestChannel and DestUniqueid.
        if name in ("DialBegin", "DialEnd"):
            stages.append(self._dial_stage(name, event, call))
            return stages
        stage = self._stage_of(name, event, call)
        if stage is not None:
            stages.append(stage)
        if name == "Hangup":
            del self._calls[uniqueid]
        return stages

    def _stage_of(
        self, name: str, event: Mapping[str, str], call: _Call
    ) -> CallStage | None:
        if name == "AGIExecStart":
            return self._agi_stage(event, call)
        if name == "Newstate" and event.get("ChannelStateDesc") == "Up":
            return self._answered(event, call)
        if name == "DTMFEnd" and event.get("Direction") == "Received":
            return _stage(StageKind.KEY, event.get("Digit", ""), event, call)
        if (
            name == "VarSet"
            and event.get("Variable") == ACTION_VARIABLE
            and event.get("Value")
        ):
            return _stage(StageKind.OUTCOME, event.get("Value", ""), event, call)
        if name == "Hangup":
            cause = event.get("Cause-txt") or f"cause {event.get('Cause', '?')}"
            return _stage(StageKind.HUNG_UP, cause, event, call)
        return None

    def _agi_stage(self, event: Mapping[str, str], call: _Call) -> CallStage | None:
        command = event.get("Command", "")
        if command.strip().upper() == "ANSWER":
            return self._answered(event, call)
        sound = played_sound(command)
        if sound is None:
            return None
        if sound.startswith(SIT_PREFIX):
            return _stage(StageKind.TONES, sound, event, call)
        return _stage(StageKind.PROMPT, sound, event, call)

    def _answered(self, event: Mapping[str, str], call: _Call) -> CallStage | None:
        # A line rings before Screener answers it, but the line half of a
        # Local test channel is up from the start, so the first of Newstate Up
        # and AGI ANSWER counts.
        if call.answered:
            return None
        call.answered = True
        return _stage(StageKind.ANSWERED, "", event, call)

    def _dial_stage(
        self, name: str, event: Mapping[str, str], call: _Call
    ) -> CallStage:
        destination = event.get("DestChannel", "")
        if name == "DialBegin":
            return _stage(StageKind.HANDSETS, destination, event, call)
        status = event.get("DialStatus", "") or "ended"
        return _stage(StageKind.HANDSETS_DONE, status, event, call)


def _stage(
    kind: StageKind, detail: str, event: Mapping[str, str], call: _Call
) -> CallStage:
    return CallStage(
        kind=kind,
        detail=detail,
        uniqueid=event.get("Uniqueid", ""),
        channel=call.channel or event.get("Channel", ""),
        timestamp=_timestamp(event),
    )


def _timestamp(event: Mapping[str, str]) -> float:
    try:
        return float(event["Timestamp"])
    except (KeyError, ValueError):
        return time.time()
