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
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from screener import __version__
from screener import config as config_module
from screener.errors import ScreenerError

if TYPE_CHECKING:
    from screener.agi.fastagi import FastAgiServer
    from screener.records import CallRecord

log = logging.getLogger("screener")

EXIT_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _build_parser()
    arguments = parser.parse_args(argv)
    _configure_logging(arguments.verbose)
    try:
        status: int = arguments.handler(arguments)
    except ScreenerError as exc:
        print(f"screener: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return status


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        "-n", "--limit", type=int, default=20, help="how many calls (default 20)"
    )
    calls.set_defaults(handler=_calls)

    sounds = commands.add_parser("sounds", help="build or check the sounds")
    sounds_commands = sounds.add_subparsers(required=True, metavar="ACTION")
    build = sounds_commands.add_parser("build", help="build tones and prompts")
    build.add_argument("--force", action="store_true", help="rebuild everything")
    build.set_defaults(handler=_sounds_build)
    sounds_check = sounds_commands.add_parser("check", help="check built sounds")
    sounds_check.set_defaults(handler=_sounds_check)

    demo = commands.add_parser(
        "demo", help="start a local Asterisk and Screener and place sample calls"
    )
    demo.set_defaults(handler=_demo)
    return parser


def _load(arguments: argparse.Namespace) -> config_module.Config:
    path = config_module.config_path(arguments.config)
    explicit = arguments.config is not None
    return config_module.load(path, missing_ok=not explicit)


def _serve(arguments: argparse.Namespace) -> int:
    from screener.agi.fastagi import FastAgiServer
    from screener.storage import open_store

    config = _load(arguments)
    store = open_store(config.database.path)

    def record(call: CallRecord) -> None:
        store.record_call(call, report=call.outcome.is_trap)

    server = FastAgiServer(config, record)
    try:
        asyncio.run(_serve_until_signal(server))
    finally:
        store.close()
    return 0


async def _serve_until_signal(server: FastAgiServer) -> None:
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(server.serve_forever())
    await stop.wait()
    log.info("stopping: finishing the calls in progress")
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    await server.close()


def _check_config(arguments: argparse.Namespace) -> int:
    path = config_module.config_path(arguments.config)
    config = config_module.load(path, missing_ok=arguments.config is None)
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


def _demo(arguments: argparse.Namespace) -> int:
    from screener import demo

    return demo.run(arguments.config)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
