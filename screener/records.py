"""The call record: what the log keeps of one call."""

from __future__ import annotations

from datetime import datetime

from screener.flow import Outcome, Stage
from screener.record import Record


class CallRecord(Record):
    """One finished call, as logged."""

    started_at: datetime
    uniqueid: str
    channel: str
    number_raw: str
    name_raw: str
    number: str | None
    name: str | None
    presence: str
    keys: str
    stage: Stage
    outcome: Outcome
    duration: float
    id: int | None = None
