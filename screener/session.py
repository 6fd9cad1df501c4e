"""One call from start to log row, shared by every transport.

The session runs the call flow, turns however it ended (normally, by a
hang-up, by a misbehaving peer or by a bug of ours) into one call record, and
hands that record to a recorder. It never re-raises: a transport only has to
close its connection afterwards, and the dialplan fails open unless the flow
asked for a hang-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from screener import callerid
from screener.agi.protocol import Environment
from screener.channel import Channel
from screener.config import Config
from screener.errors import ChannelHungUp, CommandFailed, ProtocolError, StorageError
from screener.flow import CallFlow, Outcome
from screener.lazylog import get_logger
from screener.lists.rules import EMPTY_INDEX, CallerLists, Decision, Verdict
from screener.records import CallRecord

# A lazy logger: classic AGI imports this module before its first command.
log = get_logger(__name__)

Recorder = Callable[[CallRecord], None]


async def run_session(
    channel: Channel,
    environment: Environment,
    config: Config,
    record: Recorder,
    lists: CallerLists | None = None,
) -> CallRecord:
    """Screen one call and log it; return the record written.

    Without ``lists`` no caller is allowed or blocked by number or name, but
    ``lists.withheld`` still applies.
    """
    started_at = datetime.now(UTC)
    start = time.monotonic()
    uniqueid = environment.uniqueid or "-"
    caller = callerid.parse(
        environment.callerid,
        environment.calleridname,
        country_code=config.callerid.country_code,
    )
    decision = _decide(lists or EMPTY_INDEX, caller, config, uniqueid)
    flow = CallFlow(channel, config, decision.verdict)
    outcome = await _run_flow(flow, uniqueid)
    call = CallRecord(
        started_at=started_at,
        uniqueid=uniqueid,
        channel=environment.channel,
        number_raw=environment.callerid,
        name_raw=environment.calleridname,
        number=caller.number,
        name=caller.name,
        presence=caller.presence.value,
        keys="".join(flow.progress.keys),
        stage=flow.progress.stage,
        outcome=outcome,
        duration=round(time.monotonic() - start, 3),
    )
    _log_call(call, caller)
    _record_safely(record, call)
    return call


def _decide(
    lists: CallerLists, caller: callerid.CallerId, config: Config, uniqueid: str
) -> Decision:
    try:
        decision = lists.decide(caller, config.lists.withheld)
    except Exception:
        # The lists are an optimisation of the menu, so a fault in them sends
        # the caller to the menu rather than costing the call.
        log.exception("[%s] the list lookup failed; the caller gets the menu", uniqueid)
        return Decision(Verdict.SCREEN)
    if decision.entry is not None:
        log.info(
            "[%s] %s matches %s list entry %s",
            uniqueid,
            caller.display(),
            decision.entry.list,
            decision.entry.display(),
        )
    return decision


async def _run_flow(flow: CallFlow, uniqueid: str) -> Outcome:
    try:
        return await flow.run()
    except ChannelHungUp:
        return flow.progress.outcome or Outcome.TRAPPED_HANGUP
    except (ProtocolError, CommandFailed, TimeoutError) as exc:
        log.warning(
            "[%s] call failed at stage %s: %s; the dialplan rings the handsets",
            uniqueid,
            flow.progress.stage,
            exc or type(exc).__name__,
        )
        return Outcome.FAILED
    except Exception:
        # A bug of ours must not keep the caller on a silent line: end the
        # session so the dialplan rings the handsets.
        log.exception("[%s] call flow crashed; failing open to the handsets", uniqueid)
        return Outcome.FAILED


def _log_call(call: CallRecord, caller: callerid.CallerId) -> None:
    log.info(
        "[%s] %s from %s: keys %r, stage %s, %.1f s",
        call.uniqueid,
        call.outcome,
        caller.display(),
        call.keys,
        call.stage,
        call.duration,
    )


def _record_safely(record: Recorder, call: CallRecord) -> None:
    try:
        record(call)
    except StorageError as exc:
        # An expected fault, such as a locked or read-only database. Its
        # message names the cause and the database, so one line is enough.
        log.error("[%s] could not log the call: %s", call.uniqueid, exc)
    except Exception:
        # The call itself is over; losing its row is bad but must not crash
        # the server that is serving other calls.
        log.exception("[%s] could not log the call", call.uniqueid)
