"""A Channel whose caller is a script: keys at given prompts, or a hang-up.

Used to test the call flow's decisions on their own; the same flow is tested
end to end on a real Asterisk in tests/e2e.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from screener.errors import ChannelHungUp, CommandFailed


@dataclass
class ScriptedChannel:
    """Answers each prompt from a list of caller actions.

    Each action applies to the next ``stream_file`` or ``wait_for_digit``: a key
    string presses that key, None lets it run out, "HANGUP" hangs up.
    """

    actions: list[str | None] = field(default_factory=list)
    missing_sounds: set[str] = field(default_factory=set)
    played: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    answered: bool = False
    hung_up: bool = False

    @classmethod
    def pressing(cls, actions: Iterable[str | None]) -> ScriptedChannel:
        return cls(actions=list(actions))

    async def answer(self) -> None:
        self.answered = True
        self.events.append("answer")

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        basename = sound.rsplit("/", 1)[-1]
        if basename in self.missing_sounds:
            raise CommandFailed(f"STREAM FILE {sound!r} failed")
        self.played.append(basename)
        self.events.append(f"play {basename}")
        return self._next(escape_digits)

    async def wait_for_digit(self, seconds: float) -> str | None:
        self.events.append(f"wait {seconds:g}")
        return self._next("0123456789*#")

    async def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value
        self.events.append(f"set {name}={value}")

    async def hangup(self) -> None:
        self.hung_up = True
        self.events.append("hangup")

    def _next(self, escape_digits: str) -> str | None:
        action = self.actions.pop(0) if self.actions else None
        if action == "HANGUP":
            raise ChannelHungUp("scripted hang-up")
        if action is not None and action not in escape_digits:
            return None
        return action
