"""Report emails built from a hostile caller name.

The caller name comes from the line (or a SIP display name) and is fully
under the caller's control, as is much of what Asterisk passes on (the
uniqueid of a crafted call, for one). None of it may add a header or end
the header block of a report or digest sent to the owner.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from screener import callerid
from screener.config import parse
from screener.errors import MailError
from screener.flow import Outcome, Stage
from screener.mail.report import (
    ReportSettings,
    build_digest,
    build_report,
    check_header_block,
    header_text,
)
from screener.records import CallRecord
from screener.storage import OutboxEntry, TrapCounts

HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
}
# RFC 2047 encoded words that decode to CR LF and a new header line.
BASE64_WORD = (
    "=?utf-8?b?" + base64.b64encode(b"x\r\nBcc: evil@example.net").decode() + "?="
)
Q_WORD = "=?utf-8?q?x=0D=0ABcc:_evil@example.net?="
# An encoded word that ends the header block: the rest becomes the body.
BLANK_LINE_WORD = "=?utf-8?q?x=0D=0A=0D=0Abody?="
# Encoded words that decode to a Unicode line or paragraph separator or NEL,
# at which str.splitlines() splits a header.
SEPARATOR_WORDS = [
    "=?utf-8?b?"
    + base64.b64encode(f"x{char}Bcc: e@example.net".encode()).decode()
    + "?="
    for char in ("\u2028", "\u2029", "\x85")
]
HOSTILE_NAMES = [BASE64_WORD, Q_WORD, BLANK_LINE_WORD, *SEPARATOR_WORDS]
HOSTILE_IDS = ["base64", "q", "blank-line", "u2028", "u2029", "nel"]


def make_entry(name_raw: str, uniqueid: str = "1733324400.42") -> OutboxEntry:
    caller = callerid.parse("8005550199", name_raw)
    call = CallRecord(
        started_at=datetime(2026, 12, 4, 15, 0, tzinfo=UTC),
        uniqueid=uniqueid,
        channel="DAHDI/1-1",
        number_raw="8005550199",
        name_raw=name_raw,
        number=caller.number,
        name=caller.name,
        presence=caller.presence.value,
        keys="29",
        stage=Stage.DECOY,
        outcome=Outcome.TRAPPED_DECOY,
        duration=1.0,
        id=7,
    )
    return OutboxEntry(
        id=1,
        call=call,
        created_at=call.started_at,
        state="queued",
        attempts=0,
        next_attempt_at=call.started_at,
        last_error=None,
        sent_at=None,
    )


def make_settings(base_dir: Path = Path("."), **mail: Any) -> ReportSettings:
    table = {"enabled": True, "to": "owner@example.org", "from": "s@example.org"}
    config = parse({"mail": {**table, **mail}}, base_dir=base_dir)
    return ReportSettings(mail=config.mail, decoy="James", hostname="screener")


def reparse(message: EmailMessage) -> EmailMessage:
    """Return ``message`` as a mail server receives it."""
    raw = message.as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def reparsed_report(name_raw: str) -> EmailMessage:
    """Build the report of a trapped call from ``name_raw`` and parse it back."""
    message = build_report(make_entry(name_raw), TrapCounts(0, 1, 1), make_settings())
    return reparse(message)


def reparsed_digest(names: Sequence[str]) -> EmailMessage:
    entries = [make_entry(name) for name in names]
    start = entries[0].created_at
    message = build_digest(
        entries,
        [TrapCounts(0, 1, 1)] * len(entries),
        (start, start + timedelta(hours=1)),
        make_settings(),
    )
    return reparse(message)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=HOSTILE_IDS)
def test_encoded_word_adds_no_header(name: str) -> None:
    parsed = reparsed_report(name)
    assert set(parsed.keys()) == HEADERS
    assert parsed["Bcc"] is None
    assert parsed["Message-ID"] == "<screener-report-1-20261204150000@screener>"
    assert parsed["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize("name", [BASE64_WORD, Q_WORD], ids=["base64", "q"])
def test_encoded_word_kept_literal_in_subject(name: str) -> None:
    subject = reparsed_report(name)["Subject"]
    assert subject.startswith('Trapped telemarketer #7: (800) 555-0199 "= ?utf-8?')
    assert subject.endswith('?=", asked for James')
    assert "\r" not in subject
    assert "\n" not in subject


def test_encoded_word_shown_in_body() -> None:
    plain = reparsed_report(Q_WORD).get_body(("plain",))
    assert plain is not None
    assert f'"{Q_WORD}"' in plain.get_content()


def test_digest_adds_no_header() -> None:
    parsed = reparsed_digest(HOSTILE_NAMES)
    assert set(parsed.keys()) == HEADERS
    assert parsed["Bcc"] is None
    assert parsed["Subject"].startswith("Trapped telemarketers: 6 calls, ")
    assert parsed["Message-ID"] == "<screener-digest-1-20261204150000@screener>"


@pytest.mark.parametrize("uniqueid", [BASE64_WORD, Q_WORD], ids=["base64", "q"])
def test_encoded_uniqueid_not_attached(tmp_path: Path, uniqueid: str) -> None:
    # A recording named after the hostile uniqueid exists, so only the
    # uniqueid check keeps it out of the attachment's filename parameter.
    (tmp_path / f"{uniqueid}.wav").write_bytes(b"RIFF")
    settings = make_settings(
        tmp_path, attach_recordings=True, recordings_dir=str(tmp_path)
    )
    message = build_report(make_entry("ACME", uniqueid), TrapCounts(0, 1, 1), settings)
    parsed = reparse(message)
    assert set(parsed.keys()) == HEADERS
    assert list(parsed.iter_attachments()) == []


def test_header_text_breaks_encoded_words() -> None:
    assert header_text(Q_WORD) == "= ?utf-8?q?x=0D=0ABcc:_evil@example.net?="
    assert header_text("a=?b=?c") == "a= ?b= ?c"
    assert header_text("==??") == "== ??"
    assert header_text("=\u200b?") == "= ?"
    assert "=?" not in header_text("=" + "?" * 100)


def test_header_text_removes_separators() -> None:
    assert header_text("a\u2028b\u2029c\x85d\x0be\x1cf\ud800g") == "a b c d e f g"


def test_header_block_check_catches_decoded_break() -> None:
    message = EmailMessage()
    message["Subject"] = Q_WORD
    with pytest.raises(MailError, match="Subject header contains a line break"):
        check_header_block(message)
