"""``screener status``: one health check of an installation, with fixes.

Each check returns a :class:`Check` whose level is OK, WARN or FAIL; a FAIL
carries the step that fixes it. Checks that need AMI are skipped when the
login fails, because that failure already names the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from screener import sounds
from screener.ami.calls import CALLER_CONTEXT, HANDSETS_CONTEXT
from screener.ami.client import (
    AmiConnectError,
    AmiConnection,
    AmiError,
    ami_settings,
    connect,
)
from screener.ami.events import INCOMING_CONTEXT
from screener.config import Config
from screener.errors import ScreenerError
from screener.sounds.checker import check_format
from screener.sounds.names import SOUND_EXTENSION, required_sounds

# A queued report whose next attempt is this far in the past means that no
# sender is running: `screener serve` retries due reports within minutes.
STALE_QUEUE = timedelta(minutes=15)
# Seconds to wait for the FastAGI port and for a locked database.
CONNECT_TIMEOUT_SECONDS = 5.0


class Level(enum.StrEnum):
    """The result level of a check."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Check:
    """The result of one check, and the fix when it is not OK."""

    name: str
    level: Level
    detail: str
    fix: str = ""


async def run_checks(config: Config) -> list[Check]:
    """Run every check against ``config`` and return them in display order."""
    checks = await _asterisk_checks(config)
    checks.append(await check_fastagi(config))
    checks.extend(check_sounds(config))
    checks.append(check_database(config.database.path))
    checks.extend(await _mail_checks(config))
    return checks


async def _asterisk_checks(config: Config) -> list[Check]:
    try:
        settings = ami_settings(config)
        async with connect(settings) as connection:
            return [
                await check_version(connection),
                *await check_dialplan(connection),
            ]
    except AmiError as exc:
        return [
            Check("AMI", Level.FAIL, str(exc), _ami_fix(exc)),
            Check("dialplan", Level.SKIP, "not checked: no AMI session"),
        ]


def _ami_fix(exc: AmiError) -> str:
    if isinstance(exc, AmiConnectError):
        return (
            "start Asterisk (systemctl start asterisk) and check [general] "
            "enabled, bindaddr and port in manager.conf against [ami] in the "
            "configuration"
        )
    return (
        "install asterisk-conf/manager_screener.conf, set the same secret in "
        'both places and run: asterisk -rx "manager reload"'
    )


async def check_version(connection: AmiConnection) -> Check:
    """Read Asterisk's version with the CoreSettings action."""
    where = connection.settings.address
    try:
        response = await connection.action({"Action": "CoreSettings"})
    except AmiError as exc:
        return Check(
            "AMI",
            Level.FAIL,
            f"logged in at {where}, but CoreSettings failed: {exc}",
            "grant write = reporting to the AMI user in manager.conf",
        )
    version = response[0].get("AsteriskVersion", "unknown")
    return Check(
        "AMI",
        Level.OK,
        f"Asterisk {version} at {where}, logged in as "
        f"{connection.settings.username!r} (AMI {connection.protocol_version})",
    )


async def check_dialplan(connection: AmiConnection) -> list[Check]:
    """Look for the screening context, and the test-call contexts, by ShowDialPlan."""
    checks = []
    required = await _context_check(connection, INCOMING_CONTEXT)
    checks.append(
        required
        if required.level is Level.OK
        else Check(
            "dialplan",
            Level.FAIL,
            required.detail,
            required.fix
            or "copy asterisk-conf/extensions_screener.conf to /etc/asterisk, "
            '#include it from extensions.conf and run: asterisk -rx "dialplan '
            'reload"',
        )
    )
    for context in (CALLER_CONTEXT, HANDSETS_CONTEXT):
        found = await _context_check(connection, context)
        if found.level is not Level.OK:
            found = Check(
                "dialplan",
                Level.WARN,
                f"{found.detail}; screener test-call needs it",
                found.fix
                or "copy asterisk-conf/extensions_screener_test.conf to "
                "/etc/asterisk, #include it from extensions.conf and run: "
                'asterisk -rx "dialplan reload"',
            )
        checks.append(found)
    return checks


async def _context_check(connection: AmiConnection, context: str) -> Check:
    try:
        response = await connection.action(
            {"Action": "ShowDialPlan", "Context": context}
        )
    except AmiError as exc:
        if "permission denied" in str(exc).lower():
            return Check(
                "dialplan",
                Level.FAIL,
                f"cannot read context {context}: {exc}",
                "grant write = reporting to the AMI user in manager.conf",
            )
        return Check("dialplan", Level.FAIL, f"context {context} is not loaded")
    priorities = sum(
        1 for message in response if message.get("Event") == "ListDialplan"
    )
    return Check(
        "dialplan",
        Level.OK,
        f"context {context} loaded ({priorities} priorities)",
    )


async def check_fastagi(config: Config) -> Check:
    """Open a TCP connection to the FastAGI port and close it at once.

    The server logs such a connection, which sends nothing, at DEBUG level
    only.
    """
    host, port = config.server.host, config.server.port
    where = f"{host}:{port}"
    if port == 0:
        return Check("FastAGI", Level.SKIP, "server.port is 0 (any free port)")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror
        return Check(
            "FastAGI",
            Level.FAIL,
            f"nothing accepts connections on {where}: {reason}",
            "start the server (screener serve, or systemctl start screener), "
            "and check that server.host and server.port match SCREENER_AGI in "
            "extensions.conf",
        )
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Check("FastAGI", Level.OK, f"server accepts connections on {where}")


def check_sounds(config: Config) -> list[Check]:
    """Check the built sounds, and the copies Asterisk plays if they are here."""
    fix = "run: screener sounds build, then copy the files to sounds.asterisk_dir"
    problems = sounds.check(config)
    checks = [
        Check("sounds", Level.FAIL, problem, "run: screener sounds build")
        for problem in problems
    ]
    if not problems:
        checks.append(Check("sounds", Level.OK, f"built in {config.sounds.build_dir}"))
    # Asterisk may run on this machine or elsewhere; its folder is checked
    # only when this machine has it.
    played = Path(config.sounds.asterisk_dir)
    if not played.is_dir():
        checks.append(
            Check(
                "sounds",
                Level.WARN if not problems else Level.SKIP,
                f"{played} not found on this machine, so the sounds Asterisk "
                "plays were not checked",
                fix,
            )
        )
        return checks
    copy_problems = [
        problem
        for basename in required_sounds(config)
        if (problem := check_format(played / (basename + SOUND_EXTENSION)))
    ]
    checks.extend(Check("sounds", Level.FAIL, p, fix) for p in copy_problems)
    if not copy_problems:
        checks.append(Check("sounds", Level.OK, f"Asterisk's copies in {played}"))
    return checks


def check_database(path: Path) -> Check:
    """Open the call log and try a write inside a transaction that rolls back."""
    from screener.storage import open_store

    fix = (
        f"make {path.parent} writable by the user that runs screener serve, or "
        "set database.path"
    )
    try:
        open_store(path).close()
        connection = sqlite3.connect(path, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("CREATE TABLE screener_status_probe (id INTEGER)")
            connection.execute("ROLLBACK")
        finally:
            connection.close()
    except (ScreenerError, sqlite3.Error) as exc:
        return Check("database", Level.FAIL, f"{path} is not writable: {exc}", fix)
    return Check("database", Level.OK, f"{path} is writable")


async def _mail_checks(config: Config) -> list[Check]:
    if not config.mail.enabled:
        return [Check("mail", Level.OK, "disabled (mail.enabled = false)")]
    return [await check_smtp(config), check_outbox(config)]


async def check_smtp(config: Config) -> Check:
    """Connect to the SMTP server, greet it (and STARTTLS), then QUIT.

    No AUTH is tried and no mail is sent; the password is only read.
    """
    from screener.mail import check_settings, load_password
    from screener.mail.smtp import SmtpSession

    mail = config.mail
    where = f"{mail.host}:{mail.port}"
    try:
        check_settings(mail)
        load_password(mail)
        async with SmtpSession(mail, None) as session:
            greeting = session.transcript[0] if session.transcript else None
    except ScreenerError as exc:
        return Check(
            "SMTP",
            Level.FAIL,
            str(exc),
            "check [mail] host, port, security and the password settings; "
            "screener mail test shows each reply of the server",
        )
    detail = f"{where} answered" + (f": {greeting}" if greeting else "")
    return Check("SMTP", Level.OK, detail)


def check_outbox(config: Config) -> Check:
    """Report failed reports and a queue that no sender works through."""
    from screener.mail import outbox_summary
    from screener.storage import open_store

    try:
        store = open_store(config.database.path)
    except ScreenerError as exc:
        return Check("outbox", Level.SKIP, f"not checked: {exc}")
    try:
        summary = outbox_summary(store)
    finally:
        store.close()
    detail = f"queued {summary.queued}, failed {summary.failed}, sent {summary.sent}"
    if summary.last_error:
        detail += f"; last error: {summary.last_error}"
    if summary.failed:
        return Check(
            "outbox",
            Level.FAIL,
            detail,
            "fix the cause, then run: screener mail retry",
        )
    due = summary.next_attempt_at
    if summary.queued and due is not None and datetime.now(UTC) - due > STALE_QUEUE:
        return Check(
            "outbox",
            Level.FAIL,
            f"{detail}; reports were due at {due.astimezone():%Y-%m-%d %H:%M} "
            "and nothing sent them",
            "start screener serve, which sends the reports, or run: screener mail send",
        )
    return Check("outbox", Level.OK, detail)
