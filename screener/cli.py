"""The ``screener`` command: a thin layer over the package.

Each sub-command parses its arguments, loads the configuration, calls one
function of a lower layer and turns Screener's errors into one line on stderr
and exit status 2. Only this module (and the classic AGI entry) configures
logging handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from screener import __version__
from screener import config as config_module
from screener.errors import ConfigError, ScreenerError, UsageError
from screener.lists.commands import add_list_commands

if TYPE_CHECKING:
    from screener.mail import OutboxSender
    from screener.records import CallRecord
    from screener.storage import Store

log = logging.getLogger("screener")

EXIT_ERROR = 2
# Bound of counts and ids on the command line; SQLite integers stop at 2**63.
MAX_COUNT = 1_000_000_000
# Allocations between young-generation collections while serving; Python's
# default of 700 runs a collection every few calls under load.
GC_THRESHOLD = 20_000
# Milliseconds a database write of the server waits for another writer.
SERVE_BUSY_TIMEOUT_MS = 20


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    # Output shows caller ID exactly as the line delivered it, so every line
    # printed goes through a filter that escapes terminal control sequences.
    stdout = sys.stdout
    sys.stdout = SafeTerminal(stdout)
    try:
        arguments = _build_parser().parse_args(argv)
        _configure_logging(arguments.verbose)
        status: int = arguments.handler(arguments)
    except ScreenerError as exc:
        print(f"screener: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"screener: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout = stdout
    return status


class SafeTerminal(io.TextIOBase):
    """A text stream that escapes control and format characters it is given.

    Newlines and tabs pass; an escape sequence or a bidi override from a
    caller ID arrives on the terminal as visible ``\\x1b``-style text.
    """

    def __init__(self, target: TextIO) -> None:
        self._target = target

    def write(self, text: str) -> int:
        self._target.write(escape_controls(text))
        return len(text)

    def flush(self) -> None:
        self._target.flush()


def escape_controls(text: str) -> str:
    """Return ``text`` with control and format characters shown as escapes."""
    if text.isprintable():
        return text
    return "".join(
        char
        if char.isprintable() or char in "\n\t"
        else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors end as one ``screener:`` line."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("screener").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see {self.prog} --help)")


def _count(text: str) -> int:
    """Parse a count or an id: a whole number from 1 to MAX_COUNT."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range 1..{MAX_COUNT}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="screener", description="Telemarketer-screening IVR for Asterisk."
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "-c",
        "--config",
        help="configuration file (default: $SCREENER_CONFIG or "
        f"{config_module.DEFAULT_PATH})",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log wire traffic (DEBUG)"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the FastAGI server")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate the configuration")
    check.set_defaults(handler=_check_config)

    calls = commands.add_parser("calls", help="list recent calls")
    calls.add_argument(
        "-n", "--limit", type=_count, default=20, help="how many calls (default 20)"
    )
    calls.set_defaults(handler=_calls)

    sounds = commands.add_parser("sounds", help="build or check the sounds")
    sounds_commands = sounds.add_subparsers(required=True, metavar="ACTION")
    build = sounds_commands.add_parser("build", help="build tones and prompts")
    build.add_argument("--force", action="store_true", help="rebuild everything")
    build.set_defaults(handler=_sounds_build)
    sounds_check = sounds_commands.add_parser("check", help="check built sounds")
    sounds_check.set_defaults(handler=_sounds_check)

    _add_mail_commands(commands)
    add_list_commands(commands)

    _add_ami_commands(commands)

    demo = commands.add_parser(
        "demo", help="start a local Asterisk and Screener and place sample calls"
    )
    demo.set_defaults(handler=_demo)
    return parser


def _add_mail_commands(commands: argparse._SubParsersAction[Any]) -> None:
    mail = commands.add_parser("mail", help="send and inspect the report emails")
    actions = mail.add_subparsers(required=True, metavar="ACTION")
    test = actions.add_parser(
        "test", help="send a test email and show every reply of the server"
    )
    test.add_argument("--to", help="recipient (default: mail.to)")
    test.set_defaults(handler=_mail_test)
    send = actions.add_parser("send", help="deliver the due reports once and exit")
    send.set_defaults(handler=_mail_send)
    outbox = actions.add_parser("outbox", help="list queued and failed reports")
    outbox.add_argument("--all", action="store_true", help="list sent ones too")
    outbox.set_defaults(handler=_mail_outbox)
    retry = actions.add_parser("retry", help="queue failed reports again")
    retry.add_argument(
        "ids", nargs="*", type=_count, metavar="ID", help="outbox ids (default: all)"
    )
    retry.set_defaults(handler=_mail_retry)


def _load(arguments: argparse.Namespace) -> config_module.Config:
    return config_module.load_selected(arguments.config)


def _serve(arguments: argparse.Namespace) -> int:
    from screener.lists.store import record_and_learn
    from screener.storage import open_store

    config = _load(arguments)
    if config.mail.enabled:
        from screener.mail import check_settings

        check_settings(config.mail)
    # Writes run on the event loop, so they wait only briefly for another
    # writer's lock (classic AGI, the CLI) and the batch is retried later.
    store = open_store(config.database.path, busy_timeout_ms=SERVE_BUSY_TIMEOUT_MS)

    def record(call: CallRecord) -> None:
        record_and_learn(store, call, config)

    try:
        _run_event_loop(_serve_until_signal(config, store, record))
    finally:
        store.close()
    return 0


def _run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop where it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve_until_signal(
    config: config_module.Config, store: Store, record: Callable[[CallRecord], None]
) -> None:
    from screener.agi.fastagi import (
        MAX_SESSIONS,
        OPEN_FILES_NEEDED,
        FastAgiServer,
        allowed_sessions,
    )
    from screener.callbatch import BatchRecorder, WalCheckpointer
    from screener.lists.features import FeatureHandler
    from screener.lists.store import LiveLists

    sender: OutboxSender | None = None
    if config.mail.enabled:
        from screener.mail import OutboxSender

        sender = OutboxSender(store, config)
    lists = LiveLists(store)
    # Built before the garbage collector freezes the start-up objects, so a
    # large index is frozen with them.
    lists.refresh()
    # The sender is woken after each batch commit rather than at the end of
    # a call, because only then is the call's report in the outbox.
    batch = BatchRecorder(
        store, record, on_flushed=sender.wake if sender is not None else None
    )
    max_sessions = allowed_sessions()
    if max_sessions < MAX_SESSIONS:
        log.warning(
            "the limit on open files allows only %d calls at once (of %d);"
            " raise LimitNOFILE in the systemd unit or ulimit -n to %d",
            max_sessions,
            MAX_SESSIONS,
            OPEN_FILES_NEEDED,
        )
    server = FastAgiServer(
        config,
        batch,
        lists=lists,
        features=FeatureHandler(store, config),
        max_sessions=max_sessions,
    )
    try:
        await server.start()
    except OSError as exc:
        key = "server.host" if isinstance(exc, socket.gaierror) else "server.port"
        address = f"{config.server.host}:{config.server.port}"
        raise ConfigError(key, f"cannot listen on {address}: {exc.strerror}") from exc
    _tune_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(server.serve_forever())
    sending = asyncio.create_task(sender.run()) if sender is not None else None
    checkpointer = WalCheckpointer(store)
    checkpointer.start()
    checkpointing = asyncio.create_task(checkpointer.run())
    await stop.wait()
    log.info(
        "stopping: finishing the calls in progress (a second signal fails them"
        " over to the handsets at once)"
    )
    hurry = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, hurry.set)
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    await server.close(hurry=hurry)
    batch.flush()
    checkpointing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checkpointing
    checkpointer.close()
    # Reports still queued stay in the outbox for the next start.
    if sending is not None:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending


def _tune_garbage_collector() -> None:
    # Everything alive after start-up (modules, configuration, the loop) lives
    # as long as the server. Freezing it keeps full collections short, and a
    # higher first threshold makes collections rarer under load. Together they
    # cut the event loop's longest stalls (measured with bench/).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def _check_config(arguments: argparse.Namespace) -> int:
    config = config_module.load_selected(arguments.config)
    where = str(config.source) if config.source else "built-in defaults"
    print(f"configuration OK: {where}")
    print(f"  menu: {config.prompt_text('main_menu')}")
    print(f"  second menu: {config.prompt_text('second_menu')}")
    print(f"  FastAGI: {config.server.host}:{config.server.port}")
    print(f"  call log: {config.database.path}")
    return 0


def _calls(arguments: argparse.Namespace) -> int:
    from screener.storage import open_store

    config = _load(arguments)
    store = open_store(config.database.path)
    try:
        calls = store.recent_calls(arguments.limit)
    finally:
        store.close()
    if not calls:
        print("no calls logged yet")
        return 0
    print(f"{'started (UTC)':19}  {'caller':28}  {'keys':5}  {'outcome':16}  stage")
    for call in calls:
        caller = call.number or call.number_raw or "-"
        if call.name:
            caller = f"{call.name} {caller}"
        started = call.started_at.strftime("%Y-%m-%d %H:%M:%S")
        keys = call.keys or "-"
        print(
            f"{started:19}  {caller[:28]:28}  {keys[:5]:5}  {call.outcome:16}  "
            f"{call.stage}"
        )
    return 0


def _sounds_build(arguments: argparse.Namespace) -> int:
    from screener import sounds

    config = _load(arguments)
    report = sounds.build(config, force=arguments.force)
    print(report)
    return 0


def _sounds_check(arguments: argparse.Namespace) -> int:
    from screener import sounds

    config = _load(arguments)
    problems = sounds.check(config)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def _mail_test(arguments: argparse.Namespace) -> int:
    from screener.mail import send_test

    config = _load(arguments)
    result = asyncio.run(send_test(config, arguments.to))
    for reply in result.transcript:
        print(reply)
    if result.error is not None:
        print(f"test message NOT sent: {result.error}")
        return 1
    print(f"test message accepted for {arguments.to or config.mail.to}")
    return 0


def _mail_send(arguments: argparse.Namespace) -> int:
    from screener.mail import deliver_once
    from screener.storage import open_store

    config = _load(arguments)
    store = open_store(config.database.path)
    try:
        result = asyncio.run(deliver_once(store, config))
    finally:
        store.close()
    print(
        f"sent {result.sent}, to retry {result.retried}, failed {result.failed},"
        f" waiting for the digest {result.deferred}"
    )
    return 0 if result.retried == 0 and result.failed == 0 else 1


def _mail_outbox(arguments: argparse.Namespace) -> int:
    from screener.mail import outbox_lines, outbox_summary
    from screener.storage import open_store

    config = _load(arguments)
    store = open_store(config.database.path)
    try:
        summary = outbox_summary(store)
        lines = outbox_lines(store, include_sent=arguments.all)
    finally:
        store.close()
    print(f"queued {summary.queued}, failed {summary.failed}, sent {summary.sent}")
    for line in lines:
        print(line)
    return 0


def _mail_retry(arguments: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from screener.storage import open_store

    config = _load(arguments)
    store = open_store(config.database.path)
    try:
        count = store.requeue_failed_reports(arguments.ids or None, datetime.now(UTC))
    finally:
        store.close()
    print(f"queued {count} failed report(s) again")
    return 0


def _add_ami_commands(commands: argparse._SubParsersAction[Any]) -> None:
    watch = commands.add_parser(
        "watch", help="show the calls on the line live, from Asterisk's events"
    )
    watch.set_defaults(handler=_watch)

    test_call = commands.add_parser(
        "test-call",
        help="place a call into screener-incoming, press keys and report",
    )
    test_call.add_argument(
        "--keys",
        nargs="+",
        metavar="KEY",
        help="keys to press, one per menu prompt, or 'none' to stay silent "
        "(default: keys.owner)",
    )
    test_call.add_argument(
        "--caller-id",
        default=None,
        help='caller ID of the call, as "Name <number>" '
        '(default: "Screener test" <5550100>, which no list entry matches)',
    )
    test_call.add_argument(
        "--handsets",
        default="",
        help="dial string to ring instead of the stand-in handsets, or "
        "'configured' to ring the installation's own SCREENER_HANDSETS",
    )
    test_call.add_argument(
        "--max-seconds",
        type=float,
        default=120.0,
        help="the test caller hangs up after this many seconds (default 120)",
    )
    test_call.set_defaults(handler=_test_call)

    status = commands.add_parser(
        "status", help="check Asterisk, the server, sounds, database and mail"
    )
    status.set_defaults(handler=_status)


def _watch(arguments: argparse.Namespace) -> int:
    from datetime import datetime

    from screener.ami.client import ami_settings
    from screener.ami.events import CallStage
    from screener.ami.watch import Notice, watch

    config = _load(arguments)
    settings = ami_settings(config)

    def show_stage(stage: CallStage) -> None:
        when = datetime.fromtimestamp(stage.timestamp)
        print(f"{when:%H:%M:%S}  {stage.channel}  {stage.describe()}", flush=True)

    def show_notice(notice: Notice) -> None:
        print(f"{datetime.now():%H:%M:%S}  -- {notice.text}", flush=True)

    asyncio.run(_until_signal(watch(settings, show_stage, show_notice)))
    return 0


async def _until_signal(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or SIGINT or SIGTERM arrives."""
    task = asyncio.create_task(work)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _test_call(arguments: argparse.Namespace) -> int:
    from screener.ami.client import ami_settings
    from screener.ami.testcall import DEFAULT_CALLER_ID, describe, run_test_call

    config = _load(arguments)
    keys = arguments.keys or [config.keys.owner]
    if keys == ["none"]:
        keys = []
    for key in keys:
        if not key or any(digit not in config_module.DTMF_KEYS for digit in key):
            print(f"screener: invalid key {key!r}: use 0-9, * or #", file=sys.stderr)
            return EXIT_ERROR
    result = asyncio.run(
        run_test_call(
            config,
            ami_settings(config),
            keys=keys,
            caller_id=arguments.caller_id or DEFAULT_CALLER_ID,
            handsets=arguments.handsets,
            max_seconds=arguments.max_seconds,
        )
    )
    for line in describe(result):
        print(line)
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    if result.problems:
        return 1
    print(f"test call OK: SCREENER_ACTION={result.action}")
    return 0


def _status(arguments: argparse.Namespace) -> int:
    from screener.ami.status import Level, run_checks

    config = _load(arguments)
    checks = asyncio.run(run_checks(config))
    for check in checks:
        print(f"{check.level:4}  {check.name:9} {check.detail}")
        if check.fix and check.level in (Level.FAIL, Level.WARN):
            print(f"{'':15}fix: {check.fix}")
    failed = sum(1 for check in checks if check.level is Level.FAIL)
    print(f"{failed} problem(s)" if failed else "all checks passed")
    return 1 if failed else 0


def _demo(arguments: argparse.Namespace) -> int:
    from screener import demo

    return demo.run(arguments.config)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # panoramisk logs every AMI login and queued action at INFO.
        logging.getLogger("panoramisk").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
