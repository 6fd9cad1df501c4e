"""A real SMTP server on loopback for the mail tests, built on aiosmtpd."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


@dataclass
class Received:
    """One message the server accepted."""

    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Handler:
    """Accepts messages, unless a scripted reply to DATA is queued first."""

    data_replies: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 2.0.0 Ok: queued as TEST1"


async def start_server(
    handler: Handler,
    port: int = 0,
    *,
    implicit_tls: ssl.SSLContext | None = None,
    **options: Any,
) -> asyncio.Server:
    """Start an SMTP server on loopback in the running event loop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, hostname="smtp.test", **options),
        HOST,
        port,
        ssl=implicit_tls,
    )


def port_of(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def authenticator(login: str, password: str) -> Any:
    """Return an aiosmtpd authenticator that accepts one login."""

    def check(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == login.encode()
            and data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


@dataclass
class EchoingServer:
    """A hostile SMTP server that quotes every line it receives in its replies.

    It offers one AUTH ``mechanism`` (PLAIN, LOGIN or CRAM-MD5) and replies
    to the final AUTH line with ``auth_code``. With 235 it goes on to accept
    MAIL, RCPT and DATA, again quoting the client's lines.
    """

    mechanism: str
    auth_code: int = 535
    lines: list[bytes] = field(default_factory=list)
    challenged: bool = False

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        send = writer.write
        send(b"220 echo.test ESMTP\r\n")
        in_data = False
        while line := await reader.readline():
            line = line.rstrip(b"\r\n")
            self.lines.append(line)
            if in_data:
                if line == b".":
                    in_data = False
                    send(b"250 queued\r\n")
                continue
            send(self._reply(line))
            if line.upper() == b"DATA":
                in_data = True
            if line.upper() == b"QUIT":
                break
            await writer.drain()
        writer.close()

    def _reply(self, line: bytes) -> bytes:
        if self.challenged:
            # The client's reply to the 334 challenge of LOGIN or CRAM-MD5.
            self.challenged = False
            return f"{self.auth_code} you sent: ".encode() + line + b"\r\n"
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"EHLO":
            return b"250-echo.test\r\n250 AUTH " + self.mechanism.encode() + b"\r\n"
        if verb == b"AUTH" and self.mechanism == "PLAIN":
            return f"{self.auth_code} you sent: ".encode() + line + b"\r\n"
        if verb == b"AUTH":
            self.challenged = True
            if self.mechanism == "LOGIN":
                return b"334 UGFzc3dvcmQ6\r\n"
            return b"334 " + base64.b64encode(b"<1.2@echo.test>") + b"\r\n"
        if verb in {b"MAIL", b"RCPT"}:
            return b"250 you sent: " + line + b"\r\n"
        if verb == b"DATA":
            return b"354 go ahead\r\n"
        if verb == b"QUIT":
            return b"221 bye\r\n"
        return b"500 unknown: " + line + b"\r\n"


async def start_echoing_server(echo: EchoingServer) -> asyncio.Server:
    """Start ``echo`` on loopback in the running event loop."""
    return await asyncio.start_server(echo.handle, HOST, 0)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """Create a self-signed certificate for 127.0.0.1; return (cert, key)."""
    cert = directory / "cert.pem"
    key = directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=screener test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
