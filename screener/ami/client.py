"""One AMI login with panoramisk, with errors that name the setting to fix.

panoramisk's Manager reconnects by itself every two seconds after a lost
connection or a refused connect, and never reports a rejected login. The
tools here need the opposite: ``status`` and ``test-call`` must fail fast and
report the reason, and ``watch`` runs its own reconnect loop with backoff. So
:class:`_Manager` turns panoramisk's reconnect off, and :func:`connect` waits
for the login response itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk import Manager

from screener.config import Config
from screener.errors import ScreenerError

log = logging.getLogger(__name__)

# The event classes (manager.conf "read" privileges) that watch and test-call
# subscribe to at login.
EVENT_CLASSES = "system,call,agi,dtmf,dialplan,user"


class AmiError(ScreenerError):
    """An AMI connection, login or action failed."""


class AmiConnectError(AmiError):
    """Asterisk's AMI port refused the connection or did not respond."""


class AmiLoginError(AmiError):
    """AMI rejected the username or secret."""


@dataclass(frozen=True)
class AmiSettings:
    """The address and credentials of an AMI login; the repr hides the secret."""

    host: str
    port: int
    username: str
    secret: str = field(repr=False)
    # The setting the secret came from, named in login errors.
    secret_source: str = "the secret"
    timeout_seconds: float = 10.0

    @property
    def address(self) -> str:
        """Return ``host:port`` for messages."""
        return f"{self.host}:{self.port}"


def ami_settings(config: Config) -> AmiSettings:
    """Return the AMI login of ``config``, reading the secret it points at.

    ``ami.secret_file`` wins over ``ami.secret``, which wins over the
    environment variable named by ``ami.secret_env``. Raise AmiError naming
    the settings when no secret can be read.
    """
    ami = config.ami
    if ami.secret_file is not None:
        source = f"ami.secret_file ({str(ami.secret_file)!r})"
        try:
            text = ami.secret_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AmiError(f"cannot read the AMI secret from {source}: {exc}") from exc
        # Editors add a final newline; a secret never ends with one.
        secret = text.rstrip("\r\n")
        if not secret:
            raise AmiError(f"the AMI secret file in {source} is empty")
    elif ami.secret:
        source = "ami.secret"
        secret = ami.secret
    else:
        source = f"${ami.secret_env} (ami.secret_env)"
        secret = os.environ.get(ami.secret_env, "")
        if not secret:
            raise AmiError(
                "no AMI secret configured: set ami.secret_file, ami.secret or "
                f"${ami.secret_env} to the secret of the [{ami.username}] user "
                "in manager.conf"
            )
    if "\r" in secret or "\n" in secret:
        raise AmiError(f"the AMI secret in {source} contains a line break")
    return AmiSettings(
        host=ami.host,
        port=ami.port,
        username=ami.username,
        secret=secret,
        secret_source=source,
        timeout_seconds=ami.timeout_seconds,
    )


class _Manager(Manager):  # type: ignore[misc]
    """A panoramisk Manager that reports a lost connection instead of reconnecting."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.lost = asyncio.Event()

    def connection_made(self, future: asyncio.Future[Any]) -> None:
        # A failed connect is raised to the caller of connect(), not retried.
        if future.cancelled() or future.exception() is not None:
            return
        super().connection_made(future)

    def connection_lost(self, exc: object) -> None:
        # Called when the socket closes and on Asterisk's Shutdown event.
        self._connected = False
        pinger: asyncio.TimerHandle | None = getattr(self, "pinger", None)
        if pinger is not None:
            pinger.cancel()
            self.pinger = None
        self.lost.set()


@dataclass
class AmiConnection:
    """A logged-in AMI session."""

    manager: Any
    settings: AmiSettings
    # The AMI protocol version from the banner, such as "11.0.0".
    protocol_version: str
    lost: asyncio.Event

    async def action(
        self, fields: Mapping[str, Any], *, as_list: bool | None = None
    ) -> list[dict[str, str]]:
        """Send one action and return its response messages as plain dicts.

        ``as_list`` is panoramisk's: None lets it guess from the first
        response whether more follow, and False means a single response.
        Raise AmiError when the response is an error or the connection is
        lost or silent for the timeout.
        """
        future = self.manager.send_action(dict(fields), as_list=as_list)
        lost = asyncio.create_task(self.lost.wait())
        try:
            done, _pending = await asyncio.wait(
                {future, lost},
                timeout=self.settings.timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            lost.cancel()
        name = fields.get("Action", "")
        if future not in done:
            future.cancel()
            reason = "connection lost" if self.lost.is_set() else "timed out"
            raise AmiError(f"AMI action {name} on {self.settings.address}: {reason}")
        response = future.result()
        messages = response if isinstance(response, list) else [response]
        result = [message_dict(message) for message in messages]
        if result and result[0].get("Response") == "Error":
            raise AmiError(
                f"AMI action {name} failed: {result[0].get('Message', 'no message')}"
            )
        return result


def message_dict(message: Mapping[str, Any]) -> dict[str, str]:
    """Return a panoramisk message as a plain dict of strings.

    A header that repeats, such as ChanVariable, keeps its last value.
    """
    result = {}
    for key, value in message.items():
        if isinstance(value, list):
            value = value[-1] if value else ""
        result[str(key)] = str(value)
    return result


@contextlib.asynccontextmanager
async def connect(
    settings: AmiSettings, *, events: str = "off"
) -> AsyncIterator[AmiConnection]:
    """Log in to AMI and yield the session; close the connection on exit.

    ``events`` is the Login action's Events header: "off", or a list of event
    classes such as EVENT_CLASSES. Raise AmiConnectError or AmiLoginError with
    the settings to check.
    """
    manager = _Manager(
        host=settings.host,
        port=settings.port,
        username=settings.username,
        secret=settings.secret,
        events=events,
        loop=asyncio.get_running_loop(),
        # A Ping every 10 s turns a peer that vanished without closing the
        # socket into a write error, which ends the session.
        ping_delay=10,
        ping_interval=10,
        log=logging.getLogger("panoramisk.manager"),
    )
    try:
        await _log_in(manager, settings)
        yield AmiConnection(
            manager=manager,
            settings=settings,
            protocol_version=str(getattr(manager.protocol, "version", "") or ""),
            lost=manager.lost,
        )
    finally:
        manager.close()


async def _log_in(manager: _Manager, settings: AmiSettings) -> None:
    where = settings.address
    try:
        await asyncio.wait_for(manager.connect(), settings.timeout_seconds)
    except TimeoutError:
        raise AmiConnectError(
            f"AMI at {where} did not respond within {settings.timeout_seconds:g} s; "
            "check ami.host and ami.port against bindaddr and port in "
            "manager.conf"
        ) from None
    except OSError as exc:
        raise AmiConnectError(
            f"cannot connect to AMI at {where}: {exc.strerror or exc}; check that "
            "Asterisk is running and that ami.host and ami.port match bindaddr "
            "and port in manager.conf"
        ) from exc
    login = manager.authenticated_future
    if login is None:
        raise AmiError(f"AMI at {where}: the login was not sent")
    lost = asyncio.create_task(manager.lost.wait())
    try:
        done, _pending = await asyncio.wait(
            {login, lost},
            timeout=settings.timeout_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        lost.cancel()
    if login not in done:
        reason = "closed the connection" if manager.lost.is_set() else "did not respond"
        raise AmiConnectError(
            f"AMI at {where} {reason} during the login; check that ami.port is "
            "Asterisk's AMI port"
        )
    response = message_dict(login.result())
    if response.get("Response") != "Success":
        message = response.get("Message", "login rejected")
        raise AmiLoginError(
            f"AMI login as {settings.username!r} at {where} failed: {message}; "
            f"check ami.username and {settings.secret_source} against the "
            f"[{settings.username}] section of manager.conf, and that its permit "
            "lines allow this address"
        )
    log.debug("logged in to AMI at %s as %s", where, settings.username)
