"""The silent-caller flow on panoramisk's FastAGI ``Application``, for comparison.

It sends the same ten commands as Screener's flow and checks each reply the
same way, but keeps no call log. Run as ``python -m bench.serve_panoramisk``,
with ``--uvloop`` to run it on uvloop as ``screener serve`` runs; it prints
``PORT <n>`` once listening on 127.0.0.1 and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import uvloop
from panoramisk.fast_agi import Application

SOUNDS = "/var/lib/asterisk/sounds/screener"
ALL_KEYS = "0123456789*#"
ROUNDS = 2
WAIT_MILLISECONDS = 5000

log = logging.getLogger("bench.panoramisk")


class FlowError(Exception):
    """A command failed or the caller hung up."""


async def command(request: Any, line: str) -> str:
    """Send one command; return its result value or raise FlowError."""
    reply: dict[str, Any] = await request.send_command(line)
    if "error" in reply or reply.get("status_code") != 200:
        raise FlowError(f"{line!r}: {reply}")
    value: str = reply["result"][0]
    return value


async def silent_caller(request: Any) -> None:
    """Answer, play tones and menu with a wait twice, say goodbye, hang up."""
    uniqueid = request.headers.get("agi_uniqueid", "-")
    keys: list[str] = []
    try:
        await command(request, "ANSWER")
        for _round in range(ROUNDS):
            for sound in ("sit-ic", "main-menu"):
                result = await command(
                    request, f'STREAM FILE "{SOUNDS}/{sound}" "{ALL_KEYS}" 0'
                )
                if int(result) > 0:
                    keys.append(chr(int(result)))
            result = await command(request, f"WAIT FOR DIGIT {WAIT_MILLISECONDS}")
            if int(result) > 0:
                keys.append(chr(int(result)))
        await command(request, f'STREAM FILE "{SOUNDS}/goodbye" "" 0')
        await command(request, 'SET VARIABLE "SCREENER_ACTION" "hangup"')
        await command(request, "HANGUP")
    except FlowError as exc:
        log.warning("[%s] call failed: %s", uniqueid, exc)
        return
    log.info("[%s] trapped-silent, keys %r", uniqueid, "".join(keys))


async def serve() -> None:
    """Listen on a free loopback port until SIGTERM."""
    application = Application()
    application.add_route("screener", silent_caller)
    server = await asyncio.start_server(application.handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    """Configure logging as ``screener serve`` does and serve."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if sys.argv[1:] == ["--uvloop"]:
        uvloop.run(serve())
    else:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
