"""Report emails: one per trapped call, or a digest of several.

Everything that comes from the caller (number and name as received) is
untrusted. Before it goes into a header it passes :func:`header_text`, which
replaces control characters and breaks up RFC 2047 encoded-word syntax, so a
name such as ``"Evil\\r\\nBcc: x@y"`` or ``"=?utf-8?q?=0D=0ABcc:_x@y?="``
stays one line of the Subject. :func:`check_header_block` then rejects a
built message whose parsed headers differ from the text given or hold a line
break. In the plain body caller text is shown with escapes, and in the HTML
body it is escaped. Non-ASCII text is encoded by the ``email`` package
(RFC 2047 words in headers, UTF-8 bodies).
"""

from __future__ import annotations

import html
import re
import socket
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from screener.callerid import Presence
from screener.config import Mail
from screener.errors import MailError
from screener.flow import Outcome, Stage
from screener.records import CallRecord
from screener.storage import OutboxEntry, TrapCounts

# A ringing phone line gives about 15 characters of name. Anything much longer
# is garbage, and would push the number out of a mail list's view.
MAX_HEADER_NAME = 60
# Mail servers commonly reject messages over 10 to 25 MB; stay well below.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# MixMonitor file formats Screener attaches, by file suffix.
RECORDING_TYPES = {
    ".wav": ("audio", "wav"),
    ".gsm": ("audio", "x-gsm"),
    ".mp3": ("audio", "mpeg"),
}
# Asterisk uniqueids are "<epoch>.<sequence>"; anything else is not used in a
# file name, so a crafted value cannot leave the recordings folder.
_SAFE_UNIQUEID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
# Unicode categories replaced in headers: controls (CR, LF, NEL and the
# others that str.splitlines() breaks at), format characters, line and
# paragraph separators, and lone surrogates, which cannot be encoded.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Starts an RFC 2047 encoded word. The email package decodes such words when
# a header is set, so caller text could smuggle in a CR LF or a new header.
_ENCODED_WORD_START = "=?"
_NANP = re.compile(r"^\+1(\d{3})(\d{3})(\d{4})$")
_HANGUP_WHERE = {
    Stage.ANSWER: "hung up on answer",
    Stage.TONES: "hung up during the tones",
    Stage.MENU: "hung up at the menu",
    Stage.SECOND_MENU: "hung up at the second menu",
}


@dataclass(frozen=True)
class ReportSettings:
    """Report settings beyond the call: addresses, decoy name and time zone."""

    mail: Mail
    decoy: str
    # None means the zone of the machine Screener runs on.
    zone: tzinfo | None = None
    hostname: str = ""


@dataclass(frozen=True)
class Recording:
    """A call's recording, or why none is attached."""

    path: Path | None
    note: str
    size: int = 0


def header_text(text: str, limit: int = MAX_HEADER_NAME) -> str:
    """Return ``text`` fit for one header line as literal text, bounded.

    Control, format and line/paragraph separator characters become spaces,
    runs of white space collapse to one, ``=?`` becomes ``= ?`` so that no
    part of the text is read as an RFC 2047 encoded word, and text past
    ``limit`` is cut.
    """
    replaced = "".join(
        " " if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
        for char in text
    )
    single = " ".join(replaced.split())
    # One pass is enough: the inserted space cannot form a new "=?".
    literal = single.replace(_ENCODED_WORD_START, "= ?")
    return literal if len(literal) <= limit else literal[: limit - 1] + "…"


def visible(text: str) -> str:
    """Return ``text`` quoted, with control characters shown as escapes."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _UNSAFE_CATEGORIES
        else char
        for char in text
    ).join('""')


def format_number(call: CallRecord) -> str:
    """Return the caller's number for people: NANP as ``(555) 010-0123``."""
    if call.number is not None:
        match = _NANP.match(call.number)
        return "({}) {}-{}".format(*match.groups()) if match else call.number
    if call.presence == Presence.WITHHELD:
        return "withheld number"
    if call.presence == Presence.INVALID:
        return "invalid number"
    return "no caller ID"


def outcome_phrase(call: CallRecord, decoy: str) -> str:
    """Return how the caller was trapped, as a short phrase."""
    if call.outcome is Outcome.TRAPPED_DECOY:
        return f"asked for {decoy}"
    if call.outcome is Outcome.TRAPPED_SILENT:
        return "stayed silent"
    if call.outcome is Outcome.TRAPPED_INVALID:
        return "pressed only wrong keys"
    if call.outcome is Outcome.TRAPPED_HANGUP:
        return _HANGUP_WHERE.get(call.stage, "hung up")
    if call.outcome is Outcome.TRAPPED_BLOCKED:
        return "on the block list"
    if call.outcome is Outcome.TRAPPED_WITHHELD:
        return "withheld the number"
    return str(call.outcome)


def report_subject(call: CallRecord, decoy: str) -> str:
    """Return the subject of a single report, safe for a header."""
    caller = header_text(format_number(call))
    if call.name:
        caller = f'{caller} "{header_text(call.name)}"'
    phrase = header_text(outcome_phrase(call, decoy), limit=2 * MAX_HEADER_NAME)
    return f"Trapped telemarketer #{call.id}: {caller}, {phrase}"


def message_id(kind: str, first: OutboxEntry, hostname: str) -> str:
    """Return the Message-ID of the report for ``first`` and the rows after it.

    It depends only on the outbox row, so every retry of a report carries the
    same Message-ID, and a mail client can drop a copy sent twice.
    """
    created = first.created_at.strftime("%Y%m%d%H%M%S")
    return f"<screener-{kind}-{first.id}-{created}@{hostname or local_hostname()}>"


def day_bounds(moment: datetime, zone: tzinfo | None) -> tuple[datetime, datetime]:
    """Return the start and end of the local day that contains ``moment``."""
    day = moment.astimezone(zone).date()
    return _local_midnight(day, zone), _local_midnight(day + timedelta(days=1), zone)


def digest_period(
    moment: datetime, digest: str, zone: tzinfo | None
) -> tuple[datetime, datetime]:
    """Return the local hour or day (by ``digest``) that contains ``moment``."""
    if digest == "daily":
        return day_bounds(moment, zone)
    local = moment.astimezone(zone)
    start = local.replace(minute=0, second=0, microsecond=0)
    return start, start + timedelta(hours=1)


def find_recording(mail: Mail, uniqueid: str) -> Recording:
    """Return the recording ``<recordings_dir>/<uniqueid>.<wav|gsm|mp3>``."""
    if not _SAFE_UNIQUEID.match(uniqueid):
        return Recording(None, f"none (uniqueid {visible(uniqueid)} is not a name)")
    for suffix in RECORDING_TYPES:
        path = mail.recordings_dir / f"{uniqueid}{suffix}"
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if size > MAX_ATTACHMENT_BYTES:
            return Recording(None, f"not attached: {path.name} has {size} bytes")
        return Recording(path, f"attached ({path.name})", size)
    return Recording(None, f"none found for {uniqueid}")


def build_report(
    entry: OutboxEntry, counts: TrapCounts, settings: ReportSettings
) -> EmailMessage:
    """Build the email that reports one trapped call."""
    call = entry.call
    recording = _recording(settings.mail, call)
    facts = _call_facts(call, counts, settings, recording)
    title = f"Trapped telemarketer #{call.id}"
    message = _envelope(
        settings,
        report_subject(call, settings.decoy),
        message_id("report", entry, settings.hostname),
    )
    message.set_content(_plain([(title, facts)]), cte="quoted-printable")
    message.add_alternative(
        _html(title, [(title, facts)]), subtype="html", cte="quoted-printable"
    )
    _attach(message, [recording])
    check_header_block(message)
    return message


def build_digest(
    entries: Sequence[OutboxEntry],
    counts: Sequence[TrapCounts],
    period: tuple[datetime, datetime],
    settings: ReportSettings,
) -> EmailMessage:
    """Build one email that reports every call in ``entries``."""
    start, end = (moment.astimezone(settings.zone) for moment in period)
    span = f"{start:%Y-%m-%d %H:%M} to {end:%H:%M %Z}"
    calls = "call" if len(entries) == 1 else "calls"
    subject = f"Trapped telemarketers: {len(entries)} {calls}, {span}"
    sections = []
    recordings = []
    total = 0
    for entry, count in zip(entries, counts, strict=True):
        recording = _recording(settings.mail, entry.call)
        if total + recording.size > MAX_ATTACHMENT_BYTES:
            recording = Recording(
                None,
                "not attached: the digest's recordings would exceed"
                f" {MAX_ATTACHMENT_BYTES} bytes",
            )
        total += recording.size
        recordings.append(recording)
        title = (
            f"#{entry.call.id}: {format_number(entry.call)},"
            f" {outcome_phrase(entry.call, settings.decoy)}"
        )
        sections.append((title, _call_facts(entry.call, count, settings, recording)))
    message = _envelope(
        settings, subject, message_id("digest", entries[0], settings.hostname)
    )
    message.set_content(_plain(sections, heading=subject), cte="quoted-printable")
    message.add_alternative(
        _html(subject, sections), subtype="html", cte="quoted-printable"
    )
    _attach(message, recordings)
    check_header_block(message)
    return message


def check_header_block(message: EmailMessage) -> None:
    """Raise MailError if a header of ``message`` or of any part spans lines.

    The values checked are the ones the ``email`` package will write, after
    it has decoded any encoded word, so this catches a line break however
    it got in.
    """
    for part in message.walk():
        for name, value in part.items():
            text = str(value)
            if text and text.splitlines() != [text]:
                raise MailError(f"{name} header contains a line break: {text!r}")


def _envelope(settings: ReportSettings, subject: str, identifier: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail.sender
    message["To"] = settings.mail.to
    _set_literal_header(message, "Subject", subject)
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = identifier
    # RFC 3834: marks the mail as machine-sent, so auto-replies are not sent.
    message["Auto-Submitted"] = "auto-generated"
    return message


def _set_literal_header(message: EmailMessage, name: str, value: str) -> None:
    # The email package parses a header as it is set and decodes encoded
    # words, so a value that reads back different was not taken literally.
    message[name] = value
    stored = str(message[name])
    if stored != value:
        raise MailError(
            f"{name} header {value!r} would be sent as {stored!r} because"
            " it contains an RFC 2047 encoded word"
        )


def _call_facts(
    call: CallRecord,
    counts: TrapCounts,
    settings: ReportSettings,
    recording: Recording,
) -> list[tuple[str, str]]:
    local = call.started_at.astimezone(settings.zone)
    normalised = call.number or "none"
    name = call.name or "none"
    keys = ", ".join(call.keys) if call.keys else "none"
    before = counts.same_number_before
    if call.number is None:
        history = "unknown (no number)"
    elif before == 0:
        history = "first time"
    else:
        history = f"{before} time{'s' if before != 1 else ''} before"
    facts = [
        ("Time", f"{local:%Y-%m-%d %H:%M:%S %Z (UTC%z)}"),
        ("Number", f"{format_number(call)} (E.164: {normalised})"),
        ("Number received", visible(call.number_raw)),
        ("Name", name),
        ("Name received", visible(call.name_raw)),
        ("Outcome", f"{outcome_phrase(call, settings.decoy)} ({call.outcome})"),
        ("Keys pressed", keys),
        ("Stage reached", str(call.stage)),
        ("Duration", f"{call.duration:.1f} s"),
        ("This number trapped", history),
        ("Trapped today", str(counts.today)),
        ("Trapped in all", str(counts.all_time)),
        ("Asterisk call", f"{visible(call.uniqueid)} on {visible(call.channel)}"),
    ]
    if settings.mail.attach_recordings:
        facts.append(("Recording", recording.note))
    return facts


def _plain(
    sections: Sequence[tuple[str, list[tuple[str, str]]]], heading: str = ""
) -> str:
    width = max(len(label) for _, facts in sections for label, _ in facts) + 2
    lines = [heading, ""] if heading else []
    for title, facts in sections:
        lines += [title, "=" * len(title)]
        lines += [f"{label + ':':{width}}{value}" for label, value in facts]
        lines.append("")
    return "\n".join(lines)


def _html(title: str, sections: Sequence[tuple[str, list[tuple[str, str]]]]) -> str:
    parts = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "</head><body>",
    ]
    for heading, facts in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><table>")
        parts += [
            f'<tr><th align="left">{html.escape(label)}</th>'
            f"<td>{html.escape(value)}</td></tr>"
            for label, value in facts
        ]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _recording(mail: Mail, call: CallRecord) -> Recording:
    if not mail.attach_recordings:
        return Recording(None, "not requested")
    return find_recording(mail, call.uniqueid)


def _attach(message: EmailMessage, recordings: Sequence[Recording]) -> None:
    for recording in recordings:
        if recording.path is None:
            continue
        # NOTE: MixMonitor closes the file when the channel hangs up, a moment
        # after the session ends, so a report sent at once may find the file
        # one write short. The sender's wake-up comes after the hang-up for
        # trapped calls, which makes this rare but not impossible.
        data = recording.path.read_bytes()
        maintype, subtype = RECORDING_TYPES[recording.path.suffix]
        message.add_attachment(
            data, maintype=maintype, subtype=subtype, filename=recording.path.name
        )


def _local_midnight(day: date, zone: tzinfo | None) -> datetime:
    if zone is None:
        # A naive time is read as the machine's local time, with the offset
        # (daylight saving or not) that applies on that day.
        return datetime.combine(day, time()).astimezone()
    return datetime.combine(day, time(), tzinfo=zone)


def local_hostname() -> str:
    """Return this machine's host name, reduced to characters valid in a Message-ID."""
    name = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname())
    return name or "screener.invalid"
