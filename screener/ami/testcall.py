"""``screener test-call``: prove an installation screens a call, end to end.

The call enters [screener-incoming] through the test contexts of
asterisk-conf/extensions_screener_test.conf, so the real Asterisk, dialplan,
FastAGI server, sounds and call log all take part. Each key is pressed a
second after a menu prompt starts (one key per prompt), as seen in the
AGIExecStart events, rather than after a fixed delay that a slower prompt
would break.

By default the call rings the stand-in handsets of that file, not the real
phones, so a test at night rings no phone in the house. ``handsets=
"configured"`` keeps the installation's own SCREENER_HANDSETS, and any other
value is a dial string used instead of both handset globals.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from screener.ami.calls import (
    TEST_HANDSETS,
    TEST_HANDSETS_OTHER,
    CallReport,
    run_call,
)
from screener.ami.client import AmiSettings
from screener.ami.events import CallStage, CallTracker
from screener.config import Config
from screener.flow import Action
from screener.records import CallRecord
from screener.storage import open_store

CONFIGURED_HANDSETS = "configured"
# Seven digits are not a valid number where the country code is 1, so a test
# call with this caller ID matches no list entry and teaches the lists
# nothing: a "2 9" test call would otherwise block the number, and every
# later test call from it would be blocked. Pass --caller-id with a real
# number to test list entries.
DEFAULT_CALLER_ID = '"Screener test" <5550100>'
# The server writes the call log row as the AGI session ends, which can be a
# moment after the last AMI event of the call.
LOG_WAIT_SECONDS = 5.0


@dataclass
class ScreeningResult:
    """The stages, call log row and verdict of one test call."""

    keys: list[str]
    expected_action: str | None
    report: CallReport
    stages: list[CallStage] = field(default_factory=list)
    record: CallRecord | None = None

    @property
    def action(self) -> str:
        """Return the SCREENER_ACTION that Screener set ("" when none)."""
        return self.report.line_variables.get("SCREENER_ACTION", "")

    @property
    def problems(self) -> list[str]:
        """Return why the call does not prove the installation works."""
        problems = []
        agi_status = self.report.line_variables.get("AGISTATUS", "")
        # HANGUP is normal: Screener hangs up on the trapped callers itself.
        if agi_status in ("FAILURE", "NOTFOUND"):
            problems.append(
                f"AGI ended with AGISTATUS={agi_status}: Asterisk could not run "
                "Screener (is screener serve running on SCREENER_AGI?)"
            )
        if self.expected_action is not None and self.action != self.expected_action:
            problems.append(
                f"expected SCREENER_ACTION={self.expected_action} for keys "
                f"{' '.join(self.keys) or 'none'}, got {self.action or 'nothing'}"
            )
        if self.record is None:
            problems.append(
                "the call is not in the call log; check that screener serve uses "
                "this configuration's database.path"
            )
        return problems


def expected_action(config: Config, keys: list[str]) -> str | None:
    """Return the SCREENER_ACTION that ``keys`` lead to, or None if unknown.

    NOTE: this follows the plain menu. An allow or block list entry for the
    test caller ID changes the outcome, and is reported as a mismatch.
    """
    menu = config.keys
    paths = {
        (): Action.HANGUP,
        (menu.owner,): Action.RING,
        (menu.others, menu.other): Action.RING_OTHER,
        (menu.others, menu.decoy): Action.HANGUP,
    }
    action = paths.get(tuple(keys))
    return action.value if action is not None else None


def handset_variables(handsets: str) -> dict[str, str]:
    """Return the channel variables that route this call's ringing."""
    if handsets == CONFIGURED_HANDSETS:
        return {}
    if handsets:
        return {"SCREENER_HANDSETS": handsets, "SCREENER_HANDSETS_OTHER": handsets}
    return {
        "SCREENER_HANDSETS": TEST_HANDSETS,
        "SCREENER_HANDSETS_OTHER": TEST_HANDSETS_OTHER,
    }


async def run_test_call(
    config: Config,
    ami: AmiSettings,
    *,
    keys: list[str],
    caller_id: str = DEFAULT_CALLER_ID,
    handsets: str = "",
    max_seconds: float = 120.0,
) -> ScreeningResult:
    """Place one test call, then read its stages and its call log row."""
    report = await run_call(
        ami,
        caller_id=caller_id,
        max_seconds=max_seconds,
        prompt_keys=keys,
        variables=handset_variables(handsets),
    )
    tracker = CallTracker()
    stages = [stage for event in report.events for stage in tracker.feed(event)]
    return ScreeningResult(
        keys=keys,
        expected_action=expected_action(config, keys),
        report=report,
        stages=stages,
        record=await _logged_call(config, report.line_uniqueid),
    )


async def _logged_call(config: Config, uniqueid: str) -> CallRecord | None:
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        if config.database.path.exists():
            store = open_store(config.database.path)
            try:
                record = store.call_by_uniqueid(uniqueid)
            finally:
                store.close()
            if record is not None:
                return record
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.1)


def describe(outcome: ScreeningResult) -> list[str]:
    """Return the lines ``screener test-call`` prints."""
    report = outcome.report
    lines = []
    start = outcome.stages[0].timestamp if outcome.stages else 0.0
    for stage in outcome.stages:
        lines.append(f"  {stage.timestamp - start:6.1f} s  {stage.describe()}")
    lines.append(f"keys pressed:  {' then '.join(report.keys_sent) or 'none'}")
    if report.rings:
        for ring in report.rings:
            lines.append(
                f"rang:          stand-in {ring.handset}, caller ID "
                f'"{ring.caller_id_name}" <{ring.caller_id_number}>'
            )
    record = outcome.record
    if record is not None:
        lines.append(
            f"call log:      outcome {record.outcome}, stage {record.stage}, "
            f"keys {record.keys or 'none'}, {record.duration:.1f} s"
        )
    lines.append(f"duration:      {report.duration_seconds:.1f} s")
    return lines
