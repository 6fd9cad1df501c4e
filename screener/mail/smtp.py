"""One SMTP session with a transcript of every reply the server sent.

The session runs each step (greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT,
DATA) itself rather than through aiosmtplib's one-call ``send_message``, so
that a failure names the step and carries the server's exact reply, which
``screener mail test`` prints and the outbox keeps.

Server replies are redacted before they are stored, logged or printed: a
hostile or broken server may echo the AUTH exchange, which carries the
password in plain text or base64.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from types import TracebackType
from typing import Any, Literal

import aiosmtplib
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import Default

from screener.config import Mail
from screener.errors import MailError
from screener.mail.secret import Secret, load_password

log = logging.getLogger(__name__)

# Steps whose permanent (5xx) reply rejects this message. A 5xx at an earlier
# step (greeting, EHLO, STARTTLS, AUTH) means the setup is wrong, so the
# report stays queued until the owner fixes it.
MESSAGE_STEPS = frozenset({"MAIL", "RCPT", "DATA"})
REDACTED = "[redacted]"
# A run of base64 characters long enough to carry a credential.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


@dataclass(frozen=True)
class Reply:
    """One server reply, and the step that drew it."""

    step: str
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.step}: {self.code} {self.text}"


class DeliveryFailed(MailError):
    """The server rejected a step, or the connection failed.

    ``code`` is None when there was no reply at all (connection refused,
    timeout, TLS failure).
    """

    def __init__(self, step: str, code: int | None, text: str) -> None:
        reply = f"{code} {text}" if code is not None else text
        super().__init__(f"{step}: {reply}")
        self.step = step
        self.code = code
        self.text = text

    @property
    def permanent(self) -> bool:
        """Tell whether the server rejected this message for good (5xx)."""
        return (
            self.step in MESSAGE_STEPS
            and self.code is not None
            and (500 <= self.code < 600)
        )


def tls_context(mail: Mail) -> ssl.SSLContext:
    """Return a verifying TLS context; with ``ca_file``, trust only that file."""
    try:
        return ssl.create_default_context(
            cafile=str(mail.ca_file) if mail.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise MailError(
            f"mail.ca_file: cannot load {str(mail.ca_file)!r}: {exc}"
        ) from exc


class Redactor:
    """Credentials sent to the server, removed from any text shown or stored."""

    def __init__(self) -> None:
        self._password: bytes = b""
        self._secrets: set[str] = set()

    def add_password(self, username: str, password: str) -> None:
        """Redact ``password`` and the base64 forms that AUTH PLAIN and LOGIN send."""
        secret = password.encode("utf-8")
        self._password = secret
        self._secrets.add(password)
        self._secrets.add(base64.b64encode(secret).decode("ascii"))
        plain = b"\0" + username.encode("utf-8") + b"\0" + secret
        self._secrets.add(base64.b64encode(plain).decode("ascii"))

    def add_payloads(self, payloads: Iterable[bytes]) -> None:
        """Redact arguments sent during AUTH, such as a CRAM-MD5 response."""
        for payload in payloads:
            if payload:
                self._secrets.add(payload.decode("ascii", "replace"))

    def __call__(self, text: str) -> str:
        """Return ``text`` with every credential replaced by ``[redacted]``."""
        if self._password:
            # A server may re-encode what it received, or echo it with another
            # alignment, so first drop whole base64 runs that decode to the
            # password, before a shorter known form is cut out of the middle.
            text = _BASE64_RUN.sub(self._redact_encoded, text)
        # Longest first, so a payload that contains a shorter secret goes whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def _redact_encoded(self, match: re.Match[str]) -> str:
        run = match.group()
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4))
        except (binascii.Error, ValueError):
            return run
        return REDACTED if self._password in decoded else run


class _Client(aiosmtplib.SMTP):
    """An aiosmtplib client that keeps the arguments it sends during AUTH."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.recording_auth = False
        self.auth_payloads: list[bytes] = []

    async def execute_command(
        self,
        *args: bytes,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> SMTPResponse:
        if self.recording_auth:
            # "AUTH <mechanism>" names no secret, but what follows it and every
            # continuation line (base64 password, CRAM-MD5 response) may.
            sent = args[2:] if args[:1] == (b"AUTH",) else args
            self.auth_payloads.extend(sent)
        return await super().execute_command(*args, timeout=timeout)


@dataclass
class SmtpSession:
    """An open SMTP connection, used as ``async with SmtpSession(...) as s``."""

    mail: Mail
    password: Secret | None
    # The test message may go elsewhere than mail.to.
    recipient: str | None = None
    transcript: list[Reply] = field(default_factory=list)
    _client: _Client | None = None
    _redact: Redactor = field(default_factory=Redactor, init=False, repr=False)

    async def __aenter__(self) -> SmtpSession:
        await self.open()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, greet, upgrade to TLS and log in, as the settings ask.

        On failure the connection is closed and DeliveryFailed names the step.
        """
        try:
            await self._open()
        except BaseException:
            await self.close()
            raise

    async def _open(self) -> None:
        mail = self.mail
        context = tls_context(mail) if mail.security != "none" else None
        client = _Client(
            hostname=mail.host,
            port=mail.port,
            use_tls=mail.security == "tls",
            # STARTTLS is run below as its own step; with security "none"
            # it is never tried, so an untrusted certificate cannot block mail.
            start_tls=False,
            tls_context=context,
            timeout=mail.timeout_seconds,
        )
        self._client = client
        where = f"{mail.host}:{mail.port}"
        await self._step("CONNECT", client.connect(), where=where)
        await self._step("EHLO", client.ehlo())
        if mail.security == "starttls":
            await self._step("STARTTLS", client.starttls(), where=where)
            await self._step("EHLO", client.ehlo())
        if self.password is not None:
            await self._login(client, self.password)

    async def send(self, message: EmailMessage) -> Reply:
        """Send ``message`` to the recipient; return the server's reply to DATA."""
        client = self._require_client()
        try:
            await self._step("MAIL", client.mail(self.mail.sender))
            await self._step("RCPT", client.rcpt(self.recipient or self.mail.to))
            data = message.as_bytes(policy=SMTP_POLICY)
            return await self._step("DATA", client.data(data))
        except DeliveryFailed as exc:
            if exc.code is not None:
                # The server is still talking: end the failed transaction so
                # the next message on this connection starts clean.
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.rset()
            raise

    async def close(self) -> None:
        """Say QUIT if still connected, then drop the connection."""
        client = self._client
        self._client = None
        if client is None or not client.is_connected:
            return
        try:
            response = await client.quit()
            reply = Reply("QUIT", response.code, self._redact(response.message))
            self.transcript.append(reply)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.debug("QUIT failed: %s", self._redact(str(exc)))
            client.close()

    async def _login(self, client: _Client, password: Secret) -> None:
        self._redact.add_password(self.mail.username, password.value)
        client.recording_auth = True
        login = client.login(self.mail.username, password.value)
        try:
            await self._step("AUTH", login, auth_client=client)
        except DeliveryFailed as exc:
            # The reply alone ("535 5.7.8 invalid credentials") does not say
            # which of our settings to fix.
            raise DeliveryFailed(
                "AUTH",
                exc.code,
                f"{exc.text} (check mail.username {self.mail.username!r}"
                f" and the password in {password.source})",
            ) from exc

    async def _step(
        self,
        step: str,
        request: Awaitable[SMTPResponse],
        *,
        where: str = "",
        auth_client: _Client | None = None,
    ) -> Reply:
        """Await one request and record the server's reply, redacted.

        With ``auth_client``, the AUTH arguments it recorded are added to the
        redaction, and its recording stops once the request ends.
        """
        try:
            response = await request
        except aiosmtplib.SMTPResponseException as exc:
            text = self._redacted(exc.message, auth_client)
            self.transcript.append(Reply(step, exc.code, text))
            raise DeliveryFailed(step, exc.code, text) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            text = self._redacted(str(exc) or type(exc).__name__, auth_client)
            if where:
                text = f"{where}: {text}"
            raise DeliveryFailed(step, None, text) from exc
        reply = Reply(
            step, response.code, self._redacted(response.message, auth_client)
        )
        self.transcript.append(reply)
        log.debug("SMTP %s", reply)
        return reply

    def _redacted(self, text: str, auth_client: _Client | None) -> str:
        if auth_client is not None:
            auth_client.recording_auth = False
            self._redact.add_payloads(auth_client.auth_payloads)
        return self._redact(text)

    def _require_client(self) -> aiosmtplib.SMTP:
        if self._client is None:
            raise MailError("SMTP session is not open")
        return self._client


def check_settings(mail: Mail) -> None:
    """Raise MailError now if the password or the CA file cannot be read.

    ``screener serve`` calls this at start, so that a missing password file
    stops it with a clear message instead of filling the outbox with retries.
    """
    load_password(mail)
    if mail.security != "none":
        tls_context(mail)
