"""Report delivery against a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from screener import cli
from screener.config import Config, parse
from screener.flow import Outcome, Stage
from screener.lab import free_port
from screener.mail import (
    Backoff,
    Delivery,
    OutboxSender,
    outbox_lines,
    outbox_summary,
    send_test,
)
from screener.mail.report import header_text, outcome_phrase
from screener.mail.smtp import Redactor
from screener.records import CallRecord
from screener.storage import Store, open_store
from tests.mail_server import (
    HOST,
    EchoingServer,
    Handler,
    authenticator,
    make_certificate,
    port_of,
    server_tls_context,
    start_echoing_server,
    start_server,
)

OWNER = "owner@example.org"
SENDER = "screener@example.org"
FAST = Backoff(initial=0.05, maximum=0.2, jitter=0.0)
ZONE = ZoneInfo("America/New_York")
TIMEOUT = 10.0


def make_config(tmp_path: Path, port: int, **mail: Any) -> Config:
    table = {
        "enabled": True,
        "to": OWNER,
        "from": SENDER,
        "host": HOST,
        "port": port,
        "timeout_seconds": 5,
        **mail,
    }
    return parse({"mail": table, "database": {"path": "log.sqlite"}}, base_dir=tmp_path)


def make_call(
    uniqueid: str = "1733324400.42",
    *,
    number: str | None = "+15550100123",
    name: str = "ACME CORP",
    outcome: Outcome = Outcome.TRAPPED_DECOY,
) -> CallRecord:
    return CallRecord(
        started_at=datetime(2026, 12, 4, 15, 0, tzinfo=UTC),
        uniqueid=uniqueid,
        channel="DAHDI/1-1",
        number_raw="5550100123" if number else "P",
        name_raw=name,
        number=number,
        name=name or None,
        presence="present" if number else "withheld",
        keys="29",
        stage=Stage.DECOY,
        outcome=outcome,
        duration=12.5,
    )


class Deliveries:
    """Collects the sender's attempts so tests can wait on them, not sleep."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    def __call__(self, delivery: Delivery) -> None:
        self.queue.put_nowait(delivery)

    async def next(self) -> Delivery:
        async with asyncio.timeout(TIMEOUT):
            return await self.queue.get()

    async def until(self, state: str) -> Delivery:
        while True:
            delivery = await self.next()
            if delivery.state == state:
                return delivery


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(tmp_path / "log.sqlite")
    yield store
    store.close()


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
async def server(handler: Handler) -> AsyncIterator[asyncio.Server]:
    server = await start_server(handler)
    yield server
    server.close()
    await server.wait_closed()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def sender_for(store: Store, config: Config, deliveries: Deliveries) -> OutboxSender:
    return OutboxSender(store, config, backoff=FAST, zone=ZONE, listener=deliveries)


_tasks: list[asyncio.Task[None]] = []


@pytest.fixture(autouse=True)
async def cancel_senders() -> AsyncIterator[None]:
    """Stop every sender a test started, even when the test failed."""
    yield
    for task in _tasks:
        task.cancel()
    await asyncio.gather(*_tasks, return_exceptions=True)
    _tasks.clear()


async def running(sender: OutboxSender) -> asyncio.Task[None]:
    task = asyncio.create_task(sender.run())
    _tasks.append(task)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def states(store: Store) -> list[str]:
    return [row[0] for row in store.query("SELECT state FROM outbox ORDER BY id")]


def plain_and_html(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None
    assert html is not None
    return plain.get_content(), html.get_content()


async def test_report_delivered_with_headers(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    config = make_config(tmp_path, port_of(server))
    store.record_call(make_call("1.1"), report=True)
    call_id = store.record_call(make_call("1.2"), report=True)
    store.query("UPDATE outbox SET state = 'sent' WHERE call_id = 1")

    result = await sender_for(store, config, Deliveries()).deliver_due()

    assert result.sent == 1
    assert len(handler.received) == 1
    received = handler.received[0]
    assert received.sender == SENDER
    assert received.recipients == [OWNER]
    message = received.message
    assert message["From"] == SENDER
    assert message["To"] == OWNER
    assert message["Subject"] == (
        f'Trapped telemarketer #{call_id}: (555) 010-0123 "ACME CORP", asked for James'
    )
    assert re.fullmatch(r"<screener-report-2-\d{14}@[\w.-]+>", message["Message-ID"])
    assert message["Auto-Submitted"] == "auto-generated"
    plain, html = plain_and_html(message)
    assert "2026-12-04 10:00:00 EST (UTC-0500)" in plain
    assert 'Number received:     "5550100123"' in plain
    assert "(E.164: +15550100123)" in plain
    assert "Keys pressed:        2, 9" in plain
    assert "Stage reached:       decoy-message" in plain
    assert "Duration:            12.5 s" in plain
    assert "This number trapped: 1 time before" in plain
    assert "Trapped today:       2" in plain
    assert "Trapped in all:      2" in plain
    assert "<td>(555) 010-0123 (E.164: +15550100123)</td>" in html
    assert "<td>&quot;5550100123&quot;</td>" in html
    assert states(store) == ["sent", "sent"]


async def test_server_down_then_up_delivers_once(
    tmp_path: Path, store: Store, handler: Handler
) -> None:
    port = free_port()
    deliveries = Deliveries()
    sender = sender_for(store, make_config(tmp_path, port), deliveries)
    task = await running(sender)
    store.record_call(make_call(), report=True)
    sender.wake()

    failed = await deliveries.next()
    assert failed.state == "queued"
    assert "CONNECT" in failed.detail
    server = await start_server(handler, port)
    came_up = time.monotonic()
    sent = await deliveries.until("sent")
    elapsed = time.monotonic() - came_up
    await stop(task)
    server.close()

    assert sent.outbox_ids == (1,)
    assert len(handler.received) == 1
    assert states(store) == ["sent"]
    # FAST backs off to at most 0.2 s, so delivery follows the server at once.
    assert elapsed < 1.0
    again = await sender.deliver_due()
    assert again.handled == 0
    assert len(handler.received) == 1


async def test_temporary_reply_then_accepted(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    handler.data_replies.append("451 4.3.0 Try again later")
    deliveries = Deliveries()
    sender = sender_for(store, make_config(tmp_path, port_of(server)), deliveries)
    store.record_call(make_call(), report=True)
    task = await running(sender)

    first = await deliveries.next()
    second = await deliveries.next()
    await stop(task)

    assert first.state == "queued"
    assert "DATA: 451 4.3.0 Try again later" in first.detail
    assert second.state == "sent"
    assert len(handler.received) == 1
    attempts = store.query("SELECT attempts FROM outbox")[0][0]
    assert attempts == 2


async def test_permanent_reply_kept_as_failed(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    handler.data_replies.append("554 5.7.1 Message rejected as spam")
    deliveries = Deliveries()
    sender = sender_for(store, make_config(tmp_path, port_of(server)), deliveries)
    store.record_call(make_call(), report=True)
    task = await running(sender)

    failed = await deliveries.next()
    sender.wake()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await deliveries.queue.get()
    await stop(task)

    assert failed.state == "failed"
    assert states(store) == ["failed"]
    error = store.query("SELECT last_error FROM outbox")[0][0]
    assert error == "DATA: 554 5.7.1 Message rejected as spam"
    summary = outbox_summary(store)
    assert summary.failed == 1
    assert summary.queued == 0
    assert summary.last_error == error
    lines = outbox_lines(store)
    assert len(lines) == 1
    assert "failed" in lines[0]
    assert "554 5.7.1 Message rejected as spam" in lines[0]
    assert handler.received == []


async def test_restart_delivers_each_once(tmp_path: Path, handler: Handler) -> None:
    port = free_port()
    config = make_config(tmp_path, port)
    first_store = open_store(tmp_path / "log.sqlite")
    for index in range(3):
        first_store.record_call(make_call(f"1.{index}"), report=True)
    down = await sender_for(first_store, config, Deliveries()).deliver_due()
    assert down.retried == 3
    # A sender that died mid-send leaves its lease, which must expire first.
    lease_id = first_store.record_call(make_call("1.9"), report=True)
    now = datetime.now(UTC)
    assert first_store.claim_reports([lease_id], now, now + timedelta(seconds=0.3))
    first_store.close()

    server = await start_server(handler, port)
    store = open_store(tmp_path / "log.sqlite")
    deliveries = Deliveries()
    task = await running(sender_for(store, config, deliveries))
    delivered = [await deliveries.until("sent") for _ in range(4)]
    await stop(task)
    server.close()

    assert sorted(d.outbox_ids[0] for d in delivered) == [1, 2, 3, 4]
    ids = [received.message["Message-ID"] for received in handler.received]
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert states(store) == ["sent"] * 4
    store.close()


async def test_starttls_trusted_by_ca_file(
    tmp_path: Path,
    store: Store,
    handler: Handler,
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server = await start_server(
        handler, tls_context=server_tls_context(cert, key), require_starttls=True
    )
    config = make_config(
        tmp_path, port_of(server), security="starttls", ca_file=str(cert)
    )
    store.record_call(make_call(), report=True)

    result = await sender_for(store, config, Deliveries()).deliver_due()
    server.close()

    assert result.sent == 1
    assert len(handler.received) == 1


async def test_starttls_untrusted_certificate_retries(
    tmp_path: Path,
    store: Store,
    handler: Handler,
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server = await start_server(
        handler, tls_context=server_tls_context(cert, key), require_starttls=True
    )
    config = make_config(tmp_path, port_of(server), security="starttls")
    store.record_call(make_call(), report=True)

    result = await sender_for(store, config, Deliveries()).deliver_due()
    server.close()

    assert result.retried == 1
    error = store.query("SELECT last_error FROM outbox")[0][0]
    assert error.startswith("STARTTLS:")
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert handler.received == []


async def test_implicit_tls(
    tmp_path: Path,
    store: Store,
    handler: Handler,
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server = await start_server(handler, implicit_tls=server_tls_context(cert, key))
    config = make_config(tmp_path, port_of(server), security="tls", ca_file=str(cert))
    store.record_call(make_call(), report=True)

    result = await sender_for(store, config, Deliveries()).deliver_due()
    server.close()

    assert result.sent == 1
    assert len(handler.received) == 1


PASSWORD = "s3cret-Pa55word"


AUTH_WITHOUT_TLS = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS"
)


async def auth_server(handler: Handler) -> asyncio.Server:
    return await start_server(
        handler,
        authenticator=authenticator("screener", PASSWORD),
        auth_required=True,
        auth_require_tls=False,
    )


@AUTH_WITHOUT_TLS
async def test_auth_password_from_file(
    tmp_path: Path, store: Store, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await auth_server(handler)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    config = make_config(
        tmp_path, port_of(server), username="screener", password_file="password"
    )
    store.record_call(make_call(), report=True)

    result = await sender_for(store, config, Deliveries()).deliver_due()
    server.close()

    assert result.sent == 1
    assert PASSWORD not in caplog.text


@AUTH_WITHOUT_TLS
async def test_auth_password_from_env(
    tmp_path: Path,
    store: Store,
    handler: Handler,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    server = await auth_server(handler)
    config = make_config(
        tmp_path,
        port_of(server),
        username="screener",
        password_env="TEST_SMTP_PASSWORD",
    )
    store.record_call(make_call(), report=True)

    result = await sender_for(store, config, Deliveries()).deliver_due()
    server.close()

    assert result.sent == 1
    assert PASSWORD not in caplog.text


@AUTH_WITHOUT_TLS
async def test_auth_wrong_password_names_setting(
    tmp_path: Path, store: Store, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await auth_server(handler)
    (tmp_path / "password").write_text("wrong-" + PASSWORD)
    config = make_config(
        tmp_path, port_of(server), username="screener", password_file="password"
    )
    store.record_call(make_call(), report=True)

    result = await sender_for(store, config, Deliveries()).deliver_due()
    server.close()

    assert result.retried == 1
    error = store.query("SELECT last_error FROM outbox")[0][0]
    assert error.startswith("AUTH: 535")
    assert "mail.password_file" in error
    assert "mail.username 'screener'" in error
    assert states(store) == ["queued"]
    assert PASSWORD not in caplog.text
    assert "AUTH: 535" in caplog.text


def secret_forms(username: str, password: str) -> list[str]:
    """Return the password and every base64 form of it that AUTH may send."""
    encode = base64.b64encode
    return [
        password,
        encode(password.encode()).decode(),
        encode(f"\0{username}\0{password}".encode()).decode(),
        # The same credentials without the leading NUL, as a server that
        # decodes and re-encodes them might write.
        encode(f"{username}\0{password}".encode()).decode(),
    ]


def assert_redacted(text: str) -> None:
    for form in secret_forms("screener", PASSWORD):
        assert form not in text


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_auth_echo_redacted_in_outbox(
    tmp_path: Path, store: Store, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = EchoingServer(mechanism)
    server = await start_echoing_server(echo)
    (tmp_path / "password").write_text(PASSWORD)
    config = make_config(
        tmp_path, port_of(server), username="screener", password_file="password"
    )
    store.record_call(make_call(), report=True)

    result = await sender_for(store, config, Deliveries()).deliver_due()
    server.close()

    assert result.retried == 1
    auth_lines = [line for line in echo.lines if line.startswith(b"AUTH")]
    assert len(auth_lines) == 1
    last_line = echo.lines[echo.lines.index(auth_lines[0]) + (mechanism != "PLAIN")]
    error = store.query("SELECT last_error FROM outbox")[0][0]
    assert error.startswith("AUTH: 535 you sent: ")
    assert "[redacted]" in error
    assert last_line.split(b" ")[-1].decode() not in error
    assert_redacted(error)
    assert_redacted(caplog.text)


async def test_auth_echo_redacted_in_transcript(tmp_path: Path) -> None:
    echo = EchoingServer("PLAIN", auth_code=235)
    server = await start_echoing_server(echo)
    (tmp_path / "password").write_text(PASSWORD)
    config = make_config(
        tmp_path, port_of(server), username="screener", password_file="password"
    )

    result = await send_test(config)
    server.close()

    assert result.error is None
    replies = {reply.step: reply.text for reply in result.transcript}
    assert replies["AUTH"] == "you sent: AUTH PLAIN [redacted]"
    assert replies["MAIL"].startswith("you sent: MAIL FROM:")
    for reply in result.transcript:
        assert_redacted(reply.text)


async def test_mail_test_cli_redacts_auth_echo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = EchoingServer("LOGIN")
    server = await start_echoing_server(echo)
    (tmp_path / "password").write_text(PASSWORD)
    path = tmp_path / "screener.toml"
    path.write_text(
        f'[mail]\nenabled = true\nto = "{OWNER}"\nfrom = "{SENDER}"\n'
        f'host = "{HOST}"\nport = {port_of(server)}\nusername = "screener"\n'
        'password_file = "password"\n'
    )

    status = await asyncio.to_thread(cli.main, ["-c", str(path), "mail", "test"])
    server.close()

    output = capsys.readouterr().out
    assert status == 1
    assert "AUTH: 535 you sent: [redacted]" in output
    assert_redacted(output)


@pytest.mark.parametrize(
    "echoed",
    [
        *secret_forms("screener", PASSWORD),
        # Base64 of the credentials with an authorisation identity.
        base64.b64encode(f"admin\0screener\0{PASSWORD}".encode()).decode(),
        # The password's base64 with its padding removed.
        base64.b64encode(PASSWORD.encode()).decode().rstrip("="),
    ],
)
def test_redactor_removes_secret_forms(echoed: str) -> None:
    redact = Redactor()
    redact.add_password("screener", PASSWORD)
    text = redact(f"535 rejected {echoed} here")
    assert text == "535 rejected [redacted] here"


def test_redactor_keeps_other_text() -> None:
    redact = Redactor()
    redact.add_password("screener", PASSWORD)
    redact.add_payloads([b"", b"c2NyZWVuZXI="])
    assert redact("250 2.0.0 Ok: queued as TEST1") == "250 2.0.0 Ok: queued as TEST1"
    assert redact("334 VXNlcm5hbWU6") == "334 VXNlcm5hbWU6"
    assert redact("sent c2NyZWVuZXI=") == "sent [redacted]"


def test_missing_password_names_setting(tmp_path: Path) -> None:
    from screener.errors import MailError
    from screener.mail import check_settings

    config = make_config(
        tmp_path, 25, username="screener", password_env="TEST_UNSET_PASSWORD"
    )
    with pytest.raises(MailError, match=r"\$TEST_UNSET_PASSWORD"):
        check_settings(config.mail)


async def test_caller_name_cannot_inject_headers(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    evil = "Evil\r\nBcc: victim@example.org\r\n\r\nbody"
    store.record_call(make_call(name=evil), report=True)
    config = make_config(tmp_path, port_of(server))

    await sender_for(store, config, Deliveries()).deliver_due()

    received = handler.received[0]
    assert received.recipients == [OWNER]
    headers = received.raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^bcc:", headers, re.IGNORECASE | re.MULTILINE)
    message = received.message
    assert message["Bcc"] is None
    assert "Evil Bcc: victim@example.org body" in message["Subject"]
    plain, _html = plain_and_html(message)
    assert r'"Evil\r\nBcc: victim@example.org\r\n\r\nbody"' in plain


async def test_encoded_word_name_cannot_inject_headers(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    # Python's email package decodes RFC 2047 words as a header is set, so
    # this name would become a raw CR LF and a Bcc header if taken literally.
    evil = "=?utf-8?q?Evil=0D=0ABcc:_victim@example.org?="
    store.record_call(make_call(name=evil), report=True)
    config = make_config(tmp_path, port_of(server))

    await sender_for(store, config, Deliveries()).deliver_due()

    received = handler.received[0]
    assert received.recipients == [OWNER]
    headers = received.raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^bcc:", headers, re.IGNORECASE | re.MULTILINE)
    assert received.message["Bcc"] is None
    assert (
        '"= ?utf-8?q?Evil=0D=0ABcc:_victim@example.org?="'
        in (received.message["Subject"])
    )


async def test_non_ascii_name_encoded(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    store.record_call(make_call(name="Müller & Söhne <b>"), report=True)
    config = make_config(tmp_path, port_of(server))

    await sender_for(store, config, Deliveries()).deliver_due()

    raw = handler.received[0].raw
    assert raw.isascii()
    assert b"=?utf-8?" in raw
    message = handler.received[0].message
    assert '"Müller & Söhne <b>"' in message["Subject"]
    _plain, html = plain_and_html(message)
    assert "Müller &amp; Söhne &lt;b&gt;" in html
    assert "<b>" not in html


def test_header_text_removes_controls() -> None:
    assert header_text("a\rb\nc\x00d\u2028e\u202ef") == "a b c d e f"
    assert len(header_text("x" * 500)) == 60


async def test_withheld_silent_subject(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    call = make_call(number=None, name="", outcome=Outcome.TRAPPED_SILENT)
    call_id = store.record_call(call, report=True)
    config = make_config(tmp_path, port_of(server))

    await sender_for(store, config, Deliveries()).deliver_due()

    subject = handler.received[0].message["Subject"]
    assert subject == f"Trapped telemarketer #{call_id}: withheld number, stayed silent"


async def test_recording_attached(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    recordings = tmp_path / "monitor"
    recordings.mkdir()
    (recordings / "1.5.wav").write_bytes(b"RIFF-test-audio")
    config = make_config(
        tmp_path,
        port_of(server),
        attach_recordings=True,
        recordings_dir=str(recordings),
    )
    store.record_call(make_call("1.5"), report=True)
    store.record_call(make_call("../1.5"), report=True)

    await sender_for(store, config, Deliveries()).deliver_due()

    first, second = (received.message for received in handler.received)
    attachments = list(first.iter_attachments())
    assert len(attachments) == 1
    assert attachments[0].get_filename() == "1.5.wav"
    assert attachments[0].get_content_type() == "audio/wav"
    assert attachments[0].get_content() == b"RIFF-test-audio"
    assert list(second.iter_attachments()) == []
    plain, _html = plain_and_html(second)
    assert "is not a name" in plain


async def test_hourly_digest_waits_for_period_end(
    tmp_path: Path, store: Store, handler: Handler, server: asyncio.Server
) -> None:
    config = make_config(tmp_path, port_of(server), digest="hourly")
    store.record_call(make_call("1.1"), report=True)
    store.record_call(make_call("1.2", outcome=Outcome.TRAPPED_HANGUP), report=True)

    now_sender = sender_for(store, config, Deliveries())
    early = await now_sender.deliver_due()
    assert early.deferred == 2
    assert handler.received == []

    later = datetime.now(UTC) + timedelta(hours=2)
    late_sender = OutboxSender(
        store, config, backoff=FAST, zone=ZONE, clock=lambda: later
    )
    result = await late_sender.deliver_due()

    assert result.sent == 2
    assert len(handler.received) == 1
    message = handler.received[0].message
    assert message["Subject"].startswith("Trapped telemarketers: 2 calls, ")
    assert re.fullmatch(r"<screener-digest-1-\d{14}@[\w.-]+>", message["Message-ID"])
    plain, _html = plain_and_html(message)
    assert "#1: (555) 010-0123, asked for James" in plain
    assert "#2: (555) 010-0123, hung up" in plain
    assert states(store) == ["sent", "sent"]


def test_backoff_doubles_to_maximum() -> None:
    backoff = Backoff(initial=30, maximum=3600, jitter=0.2)
    assert backoff.delay(1, lambda: 0.5) == 30
    assert backoff.delay(2, lambda: 0.5) == 60
    assert backoff.delay(8, lambda: 0.5) == 3600
    assert backoff.delay(500, lambda: 1.0) == 3600
    assert backoff.delay(1, lambda: 0.0) == pytest.approx(24)


async def test_send_test_transcript(
    tmp_path: Path, handler: Handler, server: asyncio.Server
) -> None:
    config = make_config(tmp_path, port_of(server))

    result = await send_test(config)

    assert result.error is None
    steps = [reply.step for reply in result.transcript]
    assert steps == ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert handler.received[0].message["Subject"] == "Screener test message"


async def test_mail_test_cli_prints_replies(
    tmp_path: Path,
    handler: Handler,
    server: asyncio.Server,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "screener.toml"
    path.write_text(
        f'[mail]\nenabled = true\nto = "{OWNER}"\nfrom = "{SENDER}"\n'
        f'host = "{HOST}"\nport = {port_of(server)}\n'
    )
    handler.data_replies.append("550 5.1.1 No such mailbox here")

    status = await asyncio.to_thread(cli.main, ["-c", str(path), "mail", "test"])

    output = capsys.readouterr().out
    assert status == 1
    assert "CONNECT: 220" in output
    assert "DATA: 550 5.1.1 No such mailbox here" in output
    assert "test message NOT sent" in output

    status = await asyncio.to_thread(cli.main, ["-c", str(path), "mail", "test"])

    output = capsys.readouterr().out
    assert status == 0
    assert "DATA: 250 2.0.0 Ok: queued as TEST1" in output
    assert f"test message accepted for {OWNER}" in output


def test_mail_outbox_cli_lists_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "screener.toml"
    path.write_text('[database]\npath = "log.sqlite"\n')
    store = open_store(tmp_path / "log.sqlite")
    store.record_call(make_call(), report=True)
    store.mark_reports_failed([1], "DATA: 554 rejected")
    store.close()

    status = cli.main(["-c", str(path), "mail", "outbox"])
    output = capsys.readouterr().out
    assert status == 0
    assert "queued 0, failed 1, sent 0" in output
    assert "DATA: 554 rejected" in output

    status = cli.main(["-c", str(path), "mail", "retry"])
    output = capsys.readouterr().out
    assert status == 0
    assert "queued 1 failed report(s) again" in output


@pytest.mark.parametrize(
    ("outcome", "phrase"),
    [
        (Outcome.TRAPPED_BLOCKED, "on the block list"),
        (Outcome.TRAPPED_WITHHELD, "withheld the number"),
    ],
)
def test_list_outcomes_read_as_phrases(outcome: Outcome, phrase: str) -> None:
    assert outcome_phrase(make_call(outcome=outcome), "James") == phrase
