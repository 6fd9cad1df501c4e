"""Part 2: CPU per screened call on a real Asterisk, against pure dialplan.

The lab Asterisk (screener.lab) runs with bench/menu_dialplan.conf loaded.
Silent callers are originated as ``Local/s@screener-test-caller`` twice:
first into ``[screener-incoming]``, which hands the call to ``screener serve``
running as a process of its own, then into ``[bench-dialplan-menu]``, the same
menu in dialplan alone. Both hear the same sounds for the same time, so the
CPU seconds of Asterisk plus Screener per call, divided by those of Asterisk
alone, is what Screener costs over the zero-overhead limit.

Calls are placed over one AMI connection with a bounded number in flight, and
each ends when the Hangup event of its line half arrives. Every call is then
checked: its length must cover the whole silent-caller path, and for Screener
the call log must hold a trapped-silent row for it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procfs, servers
from screener import lab
from screener.ami.client import AmiSettings, connect, message_dict
from screener.config import Menu

DIALPLAN = servers.BENCH_DIR / "menu_dialplan.conf"
DIALPLAN_CONTEXT = "bench-dialplan-menu"
SCREENER_CONTEXT = "screener-incoming"
CALLER_CONTEXT = "screener-test-caller"
CALLS = 200
QUICK_CALLS = 40
CONCURRENCY = 50
WARM_UP_CALLS = 4
# The shipped default of [menu] wait_seconds, which the dialplan gets too.
WAIT_SECONDS = Menu.wait_seconds
ROUNDS = Menu.rounds
CALLER_ID = "8885550123"
# The caller half hangs up after this many seconds if the line half has not.
CALLER_MAX_SECONDS = 60
# Seconds beyond CALLER_MAX_SECONDS before a call counts as lost.
CALL_MARGIN_SECONDS = 15.0
# A call shorter than this share of the silent path's sound and wait time
# did not walk the whole menu.
MIN_PATH_SHARE = 0.95
# Teardown of the last channels, after the last Hangup event.
SETTLE_SECONDS = 1.0
_LISTENING = re.compile(r"listening on [\d.]+:(\d+)")


@dataclass
class CallEnd:
    """The Hangup event of one call's line half, and the call's length."""

    seconds: float
    context: str
    exten: str
    cause: str


@dataclass
class Run:
    """One batch of calls into one context, with the CPU it cost."""

    context: str
    calls: int
    wall_seconds: float
    cpu_seconds: dict[str, float]
    ends: list[CallEnd] = field(default_factory=list)
    lost: int = 0


def silent_path_seconds(sounds_dir: Path) -> float:
    """Return the sound and wait time of a silent call: two rounds, goodbye."""

    def length(name: str) -> float:
        with wave.open(str(sounds_dir / f"{name}.wav")) as sound:
            frames: int = sound.getnframes()
            rate: int = sound.getframerate()
        return frames / rate

    round_seconds = length("sit-ic") + length("main-menu") + WAIT_SECONDS
    return ROUNDS * round_seconds + length("goodbye")


def _start_screener(work_dir: Path, port: int) -> servers.Server:
    """Start ``screener serve`` on ``port`` with a fresh database."""
    config = work_dir / "screener.toml"
    database = work_dir / "calls.sqlite"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[database]\npath = "{database}"\n\n'
        f"[menu]\nwait_seconds = {WAIT_SECONDS}\nrounds = {ROUNDS}\n"
    )
    log_path = work_dir / "screener.log"
    environment = dict(os.environ, PYTHONPATH=str(servers.PROJECT_DIR))
    program = Path(sys.executable).parent / "screener"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(program), "-c", str(config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env=environment,
            cwd=servers.PROJECT_DIR,
        )
    deadline = time.monotonic() + servers.START_TIMEOUT
    while not _LISTENING.search(log_path.read_text(errors="replace")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"screener serve did not start listening on port {port}; "
                f"its log:\n{log_path.read_text(errors='replace')}"
            )
        time.sleep(0.02)
    return servers.Server("screener", process, port, log_path)


async def place_calls(
    ami: AmiSettings, context: str, count: int, concurrency: int, tag: str
) -> tuple[list[CallEnd], int]:
    """Originate ``count`` silent calls into ``context``; return their ends.

    At most ``concurrency`` calls are in flight. The second value is the
    number of calls whose Hangup event did not arrive in time.
    """
    loop = asyncio.get_running_loop()
    pending: dict[str, asyncio.Future[tuple[float, dict[str, str]]]] = {}

    def on_hangup(_manager: Any, message: Any) -> None:
        event = message_dict(message)
        waiter = pending.get(event.get("Uniqueid", ""))
        if waiter is not None and not waiter.done():
            waiter.set_result((time.monotonic(), event))

    limit = asyncio.Semaphore(concurrency)
    timeout = CALLER_MAX_SECONDS + CALL_MARGIN_SECONDS

    async def call(index: int) -> CallEnd | None:
        async with limit:
            line_id = f"bench-{tag}-{index}-line"
            waiter = loop.create_future()
            pending[line_id] = waiter
            started = time.monotonic()
            await connection.action(
                {
                    "Action": "Originate",
                    "Channel": f"Local/s@{CALLER_CONTEXT}",
                    "Context": context,
                    "Exten": "s",
                    "Priority": "1",
                    "CallerID": CALLER_ID,
                    "ChannelId": line_id,
                    "OtherChannelId": f"bench-{tag}-{index}-caller",
                    "Timeout": "10000",
                    "Async": "true",
                    "Variable": [
                        f"SCREENER_TEST_MAX_SECONDS={CALLER_MAX_SECONDS}",
                        f"BENCH_WAIT_SECONDS={WAIT_SECONDS:g}",
                    ],
                }
            )
            try:
                ended, event = await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                return None
            finally:
                del pending[line_id]
            return CallEnd(
                seconds=ended - started,
                context=event.get("Context", ""),
                exten=event.get("Exten", ""),
                cause=event.get("Cause-txt", ""),
            )

    # "call" carries Hangup; the agi and dialplan classes would make Asterisk
    # format an event per AGI command or dialplan step for this connection.
    async with connect(ami, events="call") as connection:
        connection.manager.register_event("Hangup", on_hangup)
        results = await asyncio.gather(*(call(index) for index in range(count)))
    ends = [end for end in results if end is not None]
    return ends, count - len(ends)


def _measure(
    ami: AmiSettings, context: str, count: int, pids: dict[str, int], tag: str
) -> Run:
    before = {name: procfs.cpu_times(pid).total for name, pid in pids.items()}
    started = time.perf_counter()
    ends, lost = asyncio.run(place_calls(ami, context, count, CONCURRENCY, tag))
    time.sleep(SETTLE_SECONDS)
    wall = time.perf_counter() - started
    after = {name: procfs.cpu_times(pid).total for name, pid in pids.items()}
    cpu = {name: after[name] - before[name] for name in pids}
    return Run(context, count, wall, cpu, ends, lost)


def _short_calls(run: Run, minimum_seconds: float) -> int:
    return sum(1 for end in run.ends if end.seconds < minimum_seconds)


def _outcomes(database: Path, tag: str) -> Counter[str]:
    """Count the call log's outcomes of the calls tagged ``tag``."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT outcome, COUNT(*) FROM calls WHERE uniqueid LIKE ? "
            "GROUP BY outcome",
            (f"bench-{tag}-%",),
        ).fetchall()
    return Counter({str(outcome): int(number) for outcome, number in rows})


def _summary(run: Run, minimum_seconds: float) -> dict[str, Any]:
    calls = max(1, run.calls)
    total = sum(run.cpu_seconds.values())
    lengths = [end.seconds for end in run.ends]
    return {
        "context": run.context,
        "calls": run.calls,
        "wall_s": round(run.wall_seconds, 1),
        "cpu_ms_per_call": round(total / calls * 1000, 2),
        "cpu_ms_per_call_by_process": {
            name: round(seconds / calls * 1000, 2)
            for name, seconds in run.cpu_seconds.items()
        },
        "mean_call_s": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "min_call_s": round(min(lengths), 2) if lengths else 0.0,
        "lost_calls": run.lost,
        "short_calls": _short_calls(run, minimum_seconds),
        "hangup_places": dict(
            Counter(f"{end.context},{end.exten}" for end in run.ends)
        ),
        "hangup_causes": dict(Counter(end.cause for end in run.ends)),
    }


def run_part(quick: bool) -> dict[str, Any]:
    """Measure both menus on a lab Asterisk of this process and return figures."""
    count = QUICK_CALLS if quick else CALLS
    lab.require_root_user()
    root = lab.provision()
    settings = lab.LabSettings(
        root=root,
        instance=f"bench-{os.getpid()}",
        ami_port=lab.free_port(),
        ami_user="bench",
        ami_secret=secrets.token_hex(12),
        agi=f"agi://127.0.0.1:{lab.free_port()}",
        extra_dialplan=(DIALPLAN,),
    )
    minimum_seconds = MIN_PATH_SHARE * silent_path_seconds(settings.sounds_source)
    ami = AmiSettings(
        host=lab.AMI_HOST,
        port=settings.ami_port,
        username=settings.ami_user,
        secret=settings.ami_secret,
        secret_source="the bench lab's AMI secret",
    )
    load_start = procfs.load_average()
    asterisk = lab.start(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="screener-bench-") as temporary:
            work_dir = Path(temporary)
            agi_port = int(settings.agi.rsplit(":", 1)[1])
            server = _start_screener(work_dir, agi_port)
            try:
                pids = {"asterisk": asterisk.pid, "screener": server.pid}
                # Warm-up: lazy imports, the database's first pages and
                # Asterisk's file cache settle before the measured calls.
                asyncio.run(
                    place_calls(ami, SCREENER_CONTEXT, WARM_UP_CALLS, 4, "warm")
                )
                screener = _measure(ami, SCREENER_CONTEXT, count, pids, "screener")
                outcomes = _outcomes(work_dir / "calls.sqlite", "screener")
            finally:
                server.stop()
        dialplan = _measure(
            ami, DIALPLAN_CONTEXT, count, {"asterisk": asterisk.pid}, "dialplan"
        )
    finally:
        asterisk.stop()
    return _result(count, screener, dialplan, outcomes, minimum_seconds, load_start)


def _result(
    count: int,
    screener: Run,
    dialplan: Run,
    outcomes: Counter[str],
    minimum_seconds: float,
    load_start: float,
) -> dict[str, Any]:
    screener_figures = _summary(screener, minimum_seconds)
    dialplan_figures = _summary(dialplan, minimum_seconds)
    screener_ms = screener_figures["cpu_ms_per_call"]
    dialplan_ms = dialplan_figures["cpu_ms_per_call"]
    walked = (
        screener.lost == 0
        and dialplan.lost == 0
        and screener_figures["short_calls"] == 0
        and dialplan_figures["short_calls"] == 0
        and outcomes.get("trapped-silent", 0) == count
    )
    result = {
        "calls": count,
        "concurrency": CONCURRENCY,
        "wait_seconds": WAIT_SECONDS,
        "min_call_s": round(minimum_seconds, 2),
        "screener_cpu_ms_per_call": screener_ms,
        "dialplan_cpu_ms_per_call": dialplan_ms,
        "ratio": round(screener_ms / dialplan_ms, 3) if dialplan_ms else None,
        "all_calls_walked_the_menu": walked,
        "call_log_outcomes": dict(outcomes),
        "screener": screener_figures,
        "dialplan": dialplan_figures,
        "load_average_start": load_start,
        "load_average_end": procfs.load_average(),
    }
    by_process = screener_figures["cpu_ms_per_call_by_process"]
    print(
        f"  screener: {screener_ms:.1f} ms/call (Asterisk"
        f" {by_process['asterisk']:.1f} + Screener {by_process['screener']:.1f}),"
        f" {screener.wall_seconds:.0f} s wall;"
        f" dialplan: {dialplan_ms:.1f} ms/call, {dialplan.wall_seconds:.0f} s wall;"
        f" ratio {result['ratio']}; every call walked the menu: {walked}",
        flush=True,
    )
    return result
