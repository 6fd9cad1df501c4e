"""The outbox sender: delivers queued reports, retrying with backoff.

All state is in the database, so a report survives an SMTP outage and a
restart. Delivery is exactly-once as far as SMTP allows: a report is marked
sent right after the server's 250 reply to DATA arrives. Two windows
remain where a report can arrive twice, always with the same Message-ID:
the process dies between that reply and the database commit, or the
connection drops after the message was sent but before the reply was read.

The sender runs as its own asyncio task. A call never awaits it; the FastAGI
server only sets an event (:meth:`OutboxSender.wake`) when a call ends, and
the sender also polls the database for rows that the classic AGI process
writes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from screener.config import Config
from screener.errors import MailError, StorageError
from screener.mail.report import (
    ReportSettings,
    build_digest,
    build_report,
    day_bounds,
    digest_period,
    local_hostname,
)
from screener.mail.secret import load_password
from screener.mail.smtp import DeliveryFailed, Reply, SmtpSession
from screener.storage import FAILED, QUEUED, SENT, OutboxEntry, Store, TrapCounts

log = logging.getLogger(__name__)

# How often the database is checked for reports written by another process.
POLL_INTERVAL = 10.0
# Reports (or digests) sent over one connection before the next pass.
BATCH_SIZE = 20
# A digest takes every queued row of its period in one pass.
DIGEST_BATCH_SIZE = 1000


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``initial`` doubling up to ``maximum`` seconds.

    Each delay is spread by up to ``jitter`` (a fraction) either way, so that
    reports queued during one outage do not all retry in the same second.
    """

    initial: float = 30.0
    maximum: float = 3600.0
    jitter: float = 0.2

    def delay(
        self, attempts: int, uniform: Callable[[], float] = random.random
    ) -> float:
        """Return the seconds to wait after ``attempts`` failed attempts."""
        base = min(self.maximum, self.initial * 2.0 ** min(max(attempts - 1, 0), 40))
        spread = base * self.jitter * (2 * uniform() - 1)
        return min(self.maximum, max(0.0, base + spread))


@dataclass(frozen=True)
class Delivery:
    """The result of one attempt at one report or digest."""

    outbox_ids: tuple[int, ...]
    state: str
    detail: str


@dataclass
class PassResult:
    """The result of one pass over the outbox."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0

    def add(self, other: PassResult) -> None:
        """Add the counts of ``other`` to this result."""
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.deferred += other.deferred

    @property
    def handled(self) -> int:
        """Return the number of reports sent, retried or failed."""
        return self.sent + self.retried + self.failed


@dataclass(frozen=True)
class OutboxSummary:
    """The outbox at a glance, for ``screener status`` and the CLI."""

    queued: int
    failed: int
    sent: int
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class TestResult:
    """The transcript of ``screener mail test``, and the error if one ended it."""

    transcript: list[Reply] = field(default_factory=list)
    error: MailError | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OutboxSender:
    """Delivers the outbox of one database to the configured SMTP server."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        backoff: Backoff | None = None,
        poll_interval: float = POLL_INTERVAL,
        clock: Callable[[], datetime] = _utc_now,
        zone: tzinfo | None = None,
        listener: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._store = store
        self._mail = config.mail
        self._backoff = backoff or Backoff()
        self._poll_interval = poll_interval
        self._clock = clock
        self._listener = listener
        self._settings = ReportSettings(
            mail=config.mail,
            decoy=config.names.decoy,
            zone=zone,
            hostname=local_hostname(),
        )
        # A session sends MAIL, RCPT and DATA, each bounded by the timeout;
        # the lease must outlast them or a second sender could take the row.
        self._lease = timedelta(seconds=5 * config.mail.timeout_seconds + 60)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask the sender to look at the outbox now (a report was queued)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver reports until cancelled."""
        mail = self._mail
        log.info(
            "mail sender started: reports to %s via %s:%d (%s)",
            mail.to,
            mail.host,
            mail.port,
            mail.security,
        )
        if mail.username and mail.security == "none":
            log.warning(
                "mail.username is set with mail.security = none:"
                " the SMTP password crosses the network unencrypted"
            )
        try:
            while True:
                self._wake.clear()
                pause = await self._run_pass()
                if pause > 0:
                    try:
                        async with asyncio.timeout(pause):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            log.info("mail sender stopped")

    async def deliver_due(self) -> PassResult:
        """Deliver the reports that are due now, over one connection."""
        now = self._clock()
        limit = BATCH_SIZE if self._mail.digest == "none" else DIGEST_BATCH_SIZE
        entries = self._store.due_reports(now, limit)
        result = PassResult()
        if not entries:
            return result
        groups = self._group(entries, now, result)
        if not groups:
            return result
        try:
            session = SmtpSession(self._mail, load_password(self._mail))
            await session.open()
        except MailError as exc:
            self._retry_all(groups, now, exc, result)
            return result
        try:
            for index, group in enumerate(groups):
                connected = await self._deliver(session, group, result)
                if not connected:
                    self._retry_all(
                        groups[index + 1 :], now, MailError("connection lost"), result
                    )
                    break
        finally:
            await session.close()
        return result

    async def _run_pass(self) -> float:
        try:
            await self.deliver_due()
            return self._seconds_until_due()
        except (StorageError, MailError) as exc:
            log.error(
                "mail sender: %s; trying again in %.0f s", exc, self._poll_interval
            )
        except Exception:
            # A bug here must not stop the reports for good, nor spin.
            log.exception(
                "mail sender crashed in a pass; trying again in %.0f s",
                self._poll_interval,
            )
        return self._poll_interval

    def _seconds_until_due(self) -> float:
        due_at = self._store.next_report_due_at()
        if due_at is None:
            return self._poll_interval
        seconds = (due_at - self._clock()).total_seconds()
        # The small floor keeps a row that stays due (a race with another
        # sender) from turning this loop into a busy one.
        return min(self._poll_interval, max(0.01, seconds))

    def _group(
        self, entries: Sequence[OutboxEntry], now: datetime, result: PassResult
    ) -> list[list[OutboxEntry]]:
        digest = self._mail.digest
        if digest == "none":
            return [[entry] for entry in entries]
        periods: dict[datetime, list[OutboxEntry]] = {}
        ends: dict[datetime, datetime] = {}
        for entry in entries:
            start, end = digest_period(entry.created_at, digest, self._settings.zone)
            periods.setdefault(start, []).append(entry)
            ends[start] = end
        groups = []
        for start, group in periods.items():
            if ends[start] <= now:
                groups.append(group)
            else:
                # The period is still open: its digest is due when it ends.
                self._store.defer_reports([entry.id for entry in group], ends[start])
                result.deferred += len(group)
        return groups

    async def _deliver(
        self, session: SmtpSession, group: list[OutboxEntry], result: PassResult
    ) -> bool:
        """Send one report or digest; return False if the connection is lost."""
        ids = [entry.id for entry in group]
        now = self._clock()
        if not self._store.claim_reports(ids, now, now + self._lease):
            return True
        uniqueids = ", ".join(entry.call.uniqueid for entry in group)
        try:
            counts = self._trap_counts(group)
            # Reading a recording is file I/O; the database stays on this thread.
            message = await asyncio.to_thread(self._build, group, counts)
            reply = await session.send(message)
        except DeliveryFailed as exc:
            self._fail(group, exc, result)
            return exc.code is not None
        except Exception as exc:
            log.exception("report for call %s could not be built", uniqueids)
            self._retry(group, now, f"{type(exc).__name__}: {exc}", result)
            return True
        self._store.mark_reports_sent(ids, self._clock())
        result.sent += len(group)
        log.info(
            "report #%s for call %s delivered: %s",
            ",".join(map(str, ids)),
            uniqueids,
            reply,
        )
        self._notify(Delivery(tuple(ids), SENT, str(reply)))
        return True

    def _trap_counts(self, group: list[OutboxEntry]) -> list[TrapCounts]:
        zone = self._settings.zone
        return [
            self._store.trap_counts(
                entry.call, *day_bounds(entry.call.started_at, zone)
            )
            for entry in group
        ]

    def _build(
        self, group: list[OutboxEntry], counts: list[TrapCounts]
    ) -> EmailMessage:
        zone = self._settings.zone
        if self._mail.digest == "none":
            return build_report(group[0], counts[0], self._settings)
        period = digest_period(group[0].created_at, self._mail.digest, zone)
        return build_digest(group, counts, period, self._settings)

    def _fail(
        self, group: list[OutboxEntry], exc: DeliveryFailed, result: PassResult
    ) -> None:
        ids = [entry.id for entry in group]
        uniqueids = ", ".join(entry.call.uniqueid for entry in group)
        if exc.permanent:
            self._store.mark_reports_failed(ids, str(exc))
            result.failed += len(group)
            log.error(
                "report #%s for call %s rejected for good, kept as failed: %s",
                ",".join(map(str, ids)),
                uniqueids,
                exc,
            )
            self._notify(Delivery(tuple(ids), FAILED, str(exc)))
            return
        self._retry(group, self._clock(), str(exc), result)

    def _retry(
        self,
        group: list[OutboxEntry],
        now: datetime,
        error: str,
        result: PassResult,
        *,
        only_if_due: bool = False,
    ) -> None:
        ids = [entry.id for entry in group]
        attempts = max(entry.attempts for entry in group) + 1
        delay = self._backoff.delay(attempts)
        self._store.schedule_report_retry(
            ids,
            now + timedelta(seconds=delay),
            error,
            only_if_due_at=now if only_if_due else None,
        )
        result.retried += len(group)
        log.warning(
            "report #%s for call %s not delivered (attempt %d): %s; retrying in %.0f s",
            ",".join(map(str, ids)),
            ", ".join(entry.call.uniqueid for entry in group),
            attempts,
            error,
            delay,
        )
        self._notify(Delivery(tuple(ids), QUEUED, error))

    def _retry_all(
        self,
        groups: Sequence[list[OutboxEntry]],
        now: datetime,
        error: MailError,
        result: PassResult,
    ) -> None:
        # These rows were never claimed, so leave any another sender leased.
        for group in groups:
            self._retry(group, now, str(error), result, only_if_due=True)

    def _notify(self, delivery: Delivery) -> None:
        if self._listener is not None:
            self._listener(delivery)


async def deliver_once(store: Store, config: Config) -> PassResult:
    """Deliver every report that is due now, then return (``mail send``)."""
    sender = OutboxSender(store, config)
    total = PassResult()
    while True:
        result = await sender.deliver_due()
        total.add(result)
        # A pass that only retried means the server is unreachable or
        # refusing; the next rows would fare no better now.
        if result.sent == 0 or result.handled == 0:
            return total


async def send_test(config: Config, to: str | None = None) -> TestResult:
    """Send a test message and return everything the server replied."""
    mail = config.mail
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = to or mail.to
    message["Subject"] = "Screener test message"
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = make_msgid("screener-test", domain=local_hostname())
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        "This is a test message from Screener. Reports of trapped"
        " telemarketers will come from this address.\n"
    )
    session: SmtpSession | None = None
    try:
        session = SmtpSession(mail, load_password(mail), recipient=to)
        await session.open()
        await session.send(message)
    except MailError as exc:
        return TestResult(session.transcript if session else [], exc)
    finally:
        if session is not None:
            await session.close()
    return TestResult(session.transcript)


def outbox_summary(store: Store) -> OutboxSummary:
    """Return the counts of queued, failed and sent reports, and what is next."""
    counts = store.outbox_counts()
    queued = store.outbox_entries([QUEUED], limit=1)
    failed = store.outbox_entries([FAILED], limit=1000)
    last_error = None
    if queued and queued[0].last_error:
        last_error = queued[0].last_error
    elif failed:
        last_error = failed[-1].last_error
    return OutboxSummary(
        queued=counts.get(QUEUED, 0),
        failed=counts.get(FAILED, 0),
        sent=counts.get(SENT, 0),
        next_attempt_at=store.next_report_due_at(),
        last_error=last_error,
    )


def outbox_lines(store: Store, *, include_sent: bool = False) -> list[str]:
    """Return one line per queued or failed report (and sent ones if asked)."""
    states = [QUEUED, FAILED, SENT] if include_sent else [QUEUED, FAILED]
    lines = []
    for entry in store.outbox_entries(states, limit=1000):
        call = entry.call
        caller = call.number or call.number_raw or "-"
        if entry.state == SENT and entry.sent_at is not None:
            detail = f"sent {entry.sent_at.astimezone():%Y-%m-%d %H:%M:%S}"
        elif entry.state == QUEUED:
            detail = f"next attempt {entry.next_attempt_at.astimezone():%H:%M:%S}"
            if entry.last_error:
                detail += f"; last error: {entry.last_error}"
        else:
            detail = entry.last_error or ""
        lines.append(
            f"#{entry.id:<5} call {call.id:<6} {entry.state:6}  attempts"
            f" {entry.attempts:<3} {caller:16}  {detail}"
        )
    return lines
