"""The screening call flow, written as the plan a caller walks through.

Theory of operation: the line is answered at once and the Special Information
Tone starts straight away, because a predictive dialer runs answering-machine
detection in its first seconds and drops a number that sounds disconnected.
A person hears the tones, then the main menu:

    key owner  -> ring the handsets                 (passed, owner)
    key others -> second menu:
                    key other -> ring with the other ring (passed, other)
                    key decoy -> "remove me from your list", hang up
                                                    (trapped, decoy)
    no key     -> tones and menu again, ``rounds`` times in all, then
                  "Goodbye" and hang up             (trapped, silent)

Before any of this the allow and block lists decide (screener.lists.rules):
an allowed caller rings the handsets without an answer or tones (passed,
allowed), and a blocked one hears the tones and "not in service" with no menu
and no keys (trapped, blocked or withheld).

Any key may be pressed during the tones, a prompt or the wait after it. A key
that is not on the current menu replays that menu. A caller who hangs up is
handled by the session layer, which reads the stage reached from
:class:`Progress`.

The flow never rings the handsets itself: it sets ``SCREENER_ACTION`` and ends
the session, and the dialplan dials. Any other ending leaves the variable
unset, and the dialplan then rings the handsets, so a fault fails open.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from screener.channel import ALL_KEYS, Channel
from screener.config import Config
from screener.lists.rules import Verdict
from screener.record import Record
from screener.sounds.names import prompt_sound, sit_sound

ACTION_VARIABLE = "SCREENER_ACTION"
# A caller mashing wrong keys would otherwise replay a menu for ever.
MAX_INVALID_KEYS = 3


class Stage(enum.StrEnum):
    """How far the caller got."""

    ANSWER = "answer"
    TONES = "tones"
    MENU = "menu"
    SECOND_MENU = "second-menu"
    DECOY = "decoy-message"
    GOODBYE = "goodbye"
    NOT_IN_SERVICE = "not-in-service"
    HANDSETS = "handsets"


class Outcome(enum.StrEnum):
    """The end of a call, as logged and reported."""

    PASSED_OWNER = "passed-owner"
    PASSED_OTHER = "passed-other"
    PASSED_ALLOWED = "passed-allowed"
    TRAPPED_DECOY = "trapped-decoy"
    TRAPPED_SILENT = "trapped-silent"
    TRAPPED_HANGUP = "trapped-hangup"
    TRAPPED_INVALID = "trapped-invalid"
    TRAPPED_BLOCKED = "trapped-blocked"
    TRAPPED_WITHHELD = "trapped-withheld"
    FAILED = "failed"

    @property
    def is_trap(self) -> bool:
        """Tell whether this outcome counts as a trapped telemarketer."""
        return self.value.startswith("trapped-")


class Action(enum.StrEnum):
    """The dialplan's next step after the session, set in ``SCREENER_ACTION``."""

    RING = "ring"
    RING_OTHER = "ring-other"
    HANGUP = "hangup"


class Choice(enum.Enum):
    """The result of a menu."""

    OWNER = enum.auto()
    OTHERS = enum.auto()
    OTHER = enum.auto()
    DECOY = enum.auto()
    SILENT = enum.auto()
    INVALID = enum.auto()


class Progress:
    """The caller's history so far, read by the session after a hang-up."""

    def __init__(self) -> None:
        self.stage = Stage.ANSWER
        self.keys: list[str] = []
        self.outcome: Outcome | None = None


class Step(Record):
    """One sound of a menu round, and the stage the caller is in meanwhile."""

    stage: Stage
    sound: str


class CallFlow:
    """One screened call over an abstract channel."""

    def __init__(
        self, channel: Channel, config: Config, verdict: Verdict = Verdict.SCREEN
    ) -> None:
        self.channel = channel
        self.config = config
        self.verdict = verdict
        self.progress = Progress()

    async def run(self) -> Outcome:
        """Screen the call from answer to the end of the session."""
        if self.verdict is Verdict.ALLOW:
            # Not answered, so the caller hears ringing until a handset answers.
            return await self.ring(Action.RING, Outcome.PASSED_ALLOWED)
        if self.verdict is Verdict.BLOCK:
            return await self.turn_away(Outcome.TRAPPED_BLOCKED)
        if self.verdict is Verdict.BLOCK_WITHHELD:
            return await self.turn_away(Outcome.TRAPPED_WITHHELD)
        await self.channel.answer()
        choice = await self.main_menu()
        if choice is Choice.OWNER:
            return await self.ring(Action.RING, Outcome.PASSED_OWNER)
        if choice is Choice.OTHERS:
            choice = await self.second_menu()
        if choice is Choice.OTHER:
            return await self.ring(Action.RING_OTHER, Outcome.PASSED_OTHER)
        if choice is Choice.DECOY:
            return await self.send_away(Stage.DECOY, "decoy", Outcome.TRAPPED_DECOY)
        if choice is Choice.INVALID:
            return await self.send_away(
                Stage.GOODBYE, "goodbye", Outcome.TRAPPED_INVALID
            )
        return await self.send_away(Stage.GOODBYE, "goodbye", Outcome.TRAPPED_SILENT)

    async def main_menu(self) -> Choice:
        """Play tones and the main menu until a valid key or the rounds run out."""
        keys = self.config.keys
        tones = Step(Stage.TONES, self.sound(sit_sound(self.config.menu.sit_code)))
        menu = Step(Stage.MENU, self.sound(prompt_sound("main_menu")))
        choices = {keys.owner: Choice.OWNER, keys.others: Choice.OTHERS}
        return await self.menu((tones, menu), (menu,), choices)

    async def second_menu(self) -> Choice:
        """Offer the other household member and the decoy name."""
        keys = self.config.keys
        menu = Step(Stage.SECOND_MENU, self.sound(prompt_sound("second_menu")))
        choices = {keys.other: Choice.OTHER, keys.decoy: Choice.DECOY}
        return await self.menu((menu,), (menu,), choices)

    async def menu(
        self,
        round_steps: Sequence[Step],
        replay_steps: Sequence[Step],
        choices: Mapping[str, Choice],
    ) -> Choice:
        """Run a menu: ``rounds`` rounds; a wrong key replays ``replay_steps``."""
        invalid_keys = 0
        for _round in range(self.config.menu.rounds):
            key = await self.play_round(round_steps)
            while key is not None and key not in choices:
                invalid_keys += 1
                if invalid_keys > MAX_INVALID_KEYS:
                    return Choice.INVALID
                key = await self.play_round(replay_steps)
            if key is not None:
                return choices[key]
        return Choice.SILENT

    async def play_round(self, steps: Sequence[Step]) -> str | None:
        """Play ``steps`` then wait for a key; return the first key pressed."""
        for step in steps:
            self.progress.stage = step.stage
            key = await self.channel.stream_file(step.sound, ALL_KEYS)
            if key is not None:
                return self.pressed(key)
        key = await self.channel.wait_for_digit(self.config.menu.wait_seconds)
        return None if key is None else self.pressed(key)

    async def ring(self, action: Action, outcome: Outcome) -> Outcome:
        """Hand the call back to the dialplan to ring the handsets."""
        self.progress.stage = Stage.HANDSETS
        self.progress.outcome = outcome
        await self.channel.set_variable(ACTION_VARIABLE, action.value)
        return outcome

    async def turn_away(self, outcome: Outcome) -> Outcome:
        """Play the tones and "not in service", ignoring keys, and hang up."""
        # Set first, so a caller who hangs up as the call is answered or
        # during the tones is logged as blocked, not as an ordinary hang-up.
        self.progress.outcome = outcome
        await self.channel.answer()
        self.progress.stage = Stage.TONES
        await self.channel.stream_file(self.sound(sit_sound(self.config.menu.sit_code)))
        return await self.send_away(Stage.NOT_IN_SERVICE, "not_in_service", outcome)

    async def send_away(self, stage: Stage, prompt: str, outcome: Outcome) -> Outcome:
        """Play a last message and hang up."""
        self.progress.stage = stage
        self.progress.outcome = outcome
        await self.channel.stream_file(self.sound(prompt_sound(prompt)))
        # Set only after the message played: if it failed (a missing sound),
        # the variable stays unset and the dialplan fails open to the handsets.
        await self.channel.set_variable(ACTION_VARIABLE, Action.HANGUP.value)
        await self.channel.hangup()
        return outcome

    def pressed(self, key: str) -> str:
        """Note a key in the call's history and return it."""
        self.progress.keys.append(key)
        return key

    def sound(self, basename: str) -> str:
        """Return the path Asterisk plays ``basename`` from, without extension."""
        return f"{self.config.sounds.asterisk_dir}/{basename}"
