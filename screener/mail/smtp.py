"""One SMTP session with a transcript of every reply the server sent.

The session runs each step (greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT,
DATA) itself rather than through aiosmtplib's one-call ``send_message``, so
that a failure names the step and carries the server's exact reply, which
``screener mail test`` prints and the outbox keeps.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from types import TracebackType

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from screener.config import Mail
from screener.errors import MailError
from screener.mail.secret import Secret, load_password

log = logging.getLogger(__name__)

# Steps whose permanent (5xx) reply rejects this message. A 5xx at an earlier
# step (greeting, EHLO, STARTTLS, AUTH) means the setup is wrong, so the
# report stays queued until the owner fixes it.
MESSAGE_STEPS = frozenset({"MAIL", "RCPT", "DATA"})


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


@dataclass
class SmtpSession:
    """An open SMTP connection, used as ``async with SmtpSession(...) as s``."""

    mail: Mail
    password: Secret | None
    # The test message may go elsewhere than mail.to.
    recipient: str | None = None
    transcript: list[Reply] = field(default_factory=list)
    _client: aiosmtplib.SMTP | None = None

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
        client = aiosmtplib.SMTP(
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
            self.transcript.append(Reply("QUIT", response.code, response.message))
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.debug("QUIT failed: %s", exc)
            client.close()

    async def _login(self, client: aiosmtplib.SMTP, password: Secret) -> None:
        try:
            await self._step("AUTH", client.login(self.mail.username, password.value))
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
        self, step: str, request: Awaitable[SMTPResponse], *, where: str = ""
    ) -> Reply:
        try:
            response = await request
        except aiosmtplib.SMTPResponseException as exc:
            self.transcript.append(Reply(step, exc.code, exc.message))
            raise DeliveryFailed(step, exc.code, exc.message) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            text = str(exc) or type(exc).__name__
            if where:
                text = f"{where}: {text}"
            raise DeliveryFailed(step, None, text) from exc
        reply = Reply(step, response.code, response.message)
        self.transcript.append(reply)
        log.debug("SMTP %s", reply)
        return reply

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
