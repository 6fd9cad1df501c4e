"""The demo: a local Asterisk, Screener beside it, and three sample calls.

This is what ``scripts/run`` does on a machine with no real line. It starts
the lab Asterisk (a Debian sid root built once into the cache folder) with the
project's own dialplan, runs the FastAGI server in this process, places three
calls through AMI at the same time, and prints what happened to each, read
from the call log and the events Asterisk sent.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path

from screener import config as config_module
from screener import lab, record
from screener.agi.fastagi import FastAgiServer
from screener.ami.calls import CallResult, place_call
from screener.config import Config
from screener.errors import ScreenerError
from screener.records import CallRecord
from screener.storage import Store, open_store

# Each call ends by itself well before this; it only bounds a stuck demo.
CALL_LIMIT_SECONDS = 60.0


@dataclass(frozen=True)
class SampleCall:
    """A scripted caller."""

    title: str
    caller_id: str
    keys: list[tuple[float, str]]


def sample_calls(config: Config) -> list[SampleCall]:
    """Return the friend, the telemarketer and the silent dialer."""
    keys = config.keys
    return [
        SampleCall(
            f"A friend pressing {keys.owner}",
            '"Pat Friend" <5550101111>',
            [(3.0, keys.owner)],
        ),
        SampleCall(
            f"A telemarketer asking for {config.names.decoy}",
            '"ACME Sales" <8005550199>',
            [(3.0, keys.others), (3.0, keys.decoy)],
        ),
        SampleCall("A silent predictive dialer", "8885550123", []),
    ]


def run(config_path: str | None) -> int:
    """Run the demo; return the exit status."""
    try:
        lab.require_root_user()
        config = _demo_config(config_path)
        return asyncio.run(_run(config))
    except (lab.LabError, ScreenerError) as exc:
        print(f"screener demo: {exc}")
        return 1


def _demo_config(config_path: str | None) -> Config:
    base = config_module.load_selected(config_path)
    folder = lab.default_root().parent / "demo"
    return record.replace(
        base,
        server=config_module.Server(host="127.0.0.1", port=lab.free_port()),
        database=config_module.Database(path=folder / "calls.sqlite"),
    )


async def _run(config: Config) -> int:
    print("Preparing the local Asterisk (the first run builds it, about 30 s)...")
    root = lab.provision()
    settings = lab.LabSettings(
        root=root,
        instance="demo",
        ami_port=lab.free_port(),
        ami_user="demo",
        ami_secret=secrets.token_hex(12),
        agi=f"agi://127.0.0.1:{config.server.port}",
        handset_answer_seconds=1.0,
    )
    lab.stop(settings)
    process = lab.start(settings)
    # Each demo starts from an empty call log: the decoy call blocks its
    # number, so a second run would otherwise turn the telemarketer away
    # before the menu.
    _remove_database(config.database.path)
    store = open_store(config.database.path)
    try:
        return await _serve_and_call(config, process, store)
    finally:
        store.close()
        process.stop()


async def _serve_and_call(config: Config, process: lab.LabProcess, store: Store) -> int:
    def record(call: CallRecord) -> None:
        store.record_call(call, report=call.outcome.is_trap and config.mail.enabled)

    server = FastAgiServer(config, record)
    await server.start()
    serving = asyncio.create_task(server.serve_forever())
    try:
        samples = sample_calls(config)
        print(f"Placing {len(samples)} calls at once into [screener-incoming]...\n")
        results = await asyncio.gather(
            *(
                place_call(
                    process,
                    keys=sample.keys,
                    caller_id=sample.caller_id,
                    max_seconds=CALL_LIMIT_SECONDS,
                )
                for sample in samples
            )
        )
    finally:
        serving.cancel()
        await server.close()
    problems = 0
    for sample, result in zip(samples, results, strict=True):
        problems += _report(
            sample, result, store.call_by_uniqueid(result.line_uniqueid)
        )
    print(f"Call log: {config.database.path}")
    return 1 if problems else 0


def _report(sample: SampleCall, result: CallResult, call: CallRecord | None) -> int:
    print(f"{sample.title}  ({sample.caller_id})")
    keys = " then ".join(result.keys_sent) or "none"
    print(f"  keys pressed:  {keys}")
    if result.rings:
        for ring in result.rings:
            print(
                f"  rang:          {ring.handset}, caller ID "
                f'"{ring.caller_id_name}" <{ring.caller_id_number}>'
            )
    else:
        print("  rang:          nothing (Screener hung up)")
    if call is None:
        print("  call log:      MISSING: Screener did not log this call\n")
        return 1
    print(f"  outcome:       {call.outcome}  (stage {call.stage})")
    print(f"  in Screener:   {call.duration:.1f} s\n")
    return 0


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
