"""Screened calls through the real Asterisk, over FastAGI and classic AGI.

Each call is an originated Local channel: its caller half records what it
hears and sends keys, its line half runs the project's [screener-incoming].
The recording is checked by frequency analysis and by matching the prompts
sample by sample, and the call log by reading the database Screener wrote.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from screener import lab as lab_module
from screener.ami.calls import CallResult, agi_port, override_global, place_call
from screener.flow import Outcome, Stage
from screener.lab import LabProcess
from screener.records import CallRecord
from screener.storage import open_store
from tests.audio_analysis import (
    count_sit,
    find_occurrences,
    find_sit,
    read_wav,
    sit_deviations,
)
from tests.e2e.serving import screener_serve

# Each call comes from its own number: with the default learning settings a
# decoy call blocks its number, which would change every later call from it.
_numbers = itertools.count(5551230001)


def new_caller() -> tuple[str, str]:
    """Return a fresh caller ID ("Name" <number>) and its number."""
    number = str(next(_numbers))
    return f'"Pat Example" <{number}>', number


SOUNDS = Path(__file__).resolve().parents[2] / "sounds"
# The server writes the log row as the session ends, a moment after the call.
LOG_WAIT_SECONDS = 5.0
# A predictive dialer's answering-machine detection starts at once, so the
# tones must follow the answer quickly.
MAX_ANSWER_TO_TONES_SECONDS = 0.3
WAIT_SECONDS = 3
MATCH_SECONDS = 1.5
MENU_SETTINGS = f"[menu]\nrounds = 2\nwait_seconds = {WAIT_SECONDS}\n"


@dataclass(frozen=True)
class Screener:
    """A running Screener and the database it logs to (host path)."""

    database: Path
    log: Path


@pytest.fixture(scope="module")
def screener_server(
    lab: LabProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Screener]:
    """Run `screener serve` on the lab's FastAGI port."""
    port = agi_port(lab)
    folder = tmp_path_factory.mktemp("screener")
    config = folder / "screener.toml"
    database = folder / "calls.sqlite"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[database]\npath = "{database}"\n\n{MENU_SETTINGS}'
    )
    log = folder / "serve.log"
    with screener_serve(config, port, log):
        yield Screener(database=database, log=log)


@pytest.fixture
async def classic_agi(lab: LabProcess) -> AsyncIterator[Screener]:
    """Point the dialplan at the classic AGI script for one test."""
    settings = lab.settings
    inside = settings.lib_dir / "classic"
    config_inside = inside / "screener.toml"
    database_inside = inside / f"calls-{time.monotonic_ns()}.sqlite"
    config_host = settings.host_path(config_inside)
    config_host.parent.mkdir(parents=True, exist_ok=True)
    config_host.write_text(f'[database]\npath = "{database_inside}"\n\n{MENU_SETTINGS}')
    target = f"{lab_module.AGI_WRAPPER},{config_inside}"
    async with override_global(lab, "SCREENER_AGI", target):
        yield Screener(
            database=settings.host_path(database_inside),
            log=settings.console_log,
        )


async def logged_call(screener: Screener, result: CallResult) -> CallRecord:
    """Return the call log row of ``result``, waiting briefly for the write."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        if screener.database.exists():
            store = open_store(screener.database)
            try:
                call = store.call_by_uniqueid(result.line_uniqueid)
            finally:
                store.close()
            if call is not None:
                return call
        if time.monotonic() > deadline:
            pytest.fail(f"call {result.line_uniqueid} is not in the call log")
        await asyncio.sleep(0.05)


def heard(result: CallResult, sound: str) -> list[int]:
    """Return where the prompt ``sound`` plays in the caller's recording.

    Only the prompt's first 1.5 s are matched: long enough that a prompt cut
    short by a key after a second does not count, short enough that a frame
    the recording lost later in a long prompt (on a loaded machine) does not
    hide the playback.
    """
    recording, rate = read_wav(result.recording)
    template, _rate = read_wav(SOUNDS / f"{sound}.wav")
    return find_occurrences(recording, template[: int(MATCH_SECONDS * rate)])


def agi_command_times(result: CallResult) -> list[tuple[float, str]]:
    """Return (Asterisk timestamp, command) of each AGI command on the line."""
    return [
        (float(event["Timestamp"]), event.get("Command", ""))
        for event in result.events
        if event.get("Event") == "AGIExecStart"
        and event.get("Uniqueid") == result.line_uniqueid
    ]


async def test_owner_key_rings_handsets(
    lab: LabProcess, screener_server: Screener
) -> None:
    caller, number = new_caller()
    result = await place_call(lab, keys=[(4.0, "1")], caller_id=caller, max_seconds=30)

    assert result.line_variables["SCREENER_ACTION"] == "ring"
    assert [ring.handset for ring in result.rings] == ["handsets"]
    assert result.rings[0].caller_id_number == number
    assert result.rings[0].caller_id_name == "Pat Example"
    call = await logged_call(screener_server, result)
    assert call.outcome is Outcome.PASSED_OWNER
    assert call.keys == "1"
    assert call.stage is Stage.HANDSETS
    assert call.number_raw == number
    assert call.number == "+1" + number
    assert call.name_raw == "Pat Example"


async def test_caller_hears_exact_intercept_tones(
    lab: LabProcess, screener_server: Screener
) -> None:
    caller, _number = new_caller()
    result = await place_call(lab, keys=[(3.0, "1")], caller_id=caller, max_seconds=30)

    samples, rate = read_wav(result.recording)
    tones = find_sit(samples, rate)
    frequencies = [round(tone.frequency, 1) for tone in tones]
    assert frequencies == pytest.approx([913.8, 1370.6, 1776.7], rel=0.002)
    assert sit_deviations(tones, "IC") == []


async def test_tones_start_within_300_ms_of_answer(
    lab: LabProcess, screener_server: Screener
) -> None:
    caller, _number = new_caller()
    result = await place_call(lab, keys=[(2.0, "1")], caller_id=caller, max_seconds=30)

    commands = agi_command_times(result)
    answered = next(at for at, command in commands if command == "ANSWER")
    tones = next(at for at, command in commands if "sit-ic" in command)
    assert 0 <= tones - answered <= MAX_ANSWER_TO_TONES_SECONDS


async def test_other_key_rings_distinctively(
    lab: LabProcess, screener_server: Screener
) -> None:
    caller, number = new_caller()
    result = await place_call(
        lab, keys=[(4.0, "2"), (2.0, "1")], caller_id=caller, max_seconds=30
    )

    assert result.line_variables["SCREENER_ACTION"] == "ring-other"
    assert [ring.handset for ring in result.rings] == ["handsets-other"]
    assert result.rings[0].caller_id_number == number
    call = await logged_call(screener_server, result)
    assert call.outcome is Outcome.PASSED_OTHER
    assert call.keys == "21"


async def test_decoy_hears_removal_message(
    lab: LabProcess, screener_server: Screener
) -> None:
    caller, _number = new_caller()
    result = await place_call(
        lab, keys=[(4.0, "2"), (2.0, "9")], caller_id=caller, max_seconds=40
    )

    assert result.line_variables["SCREENER_ACTION"] == "hangup"
    assert result.rings == []
    assert len(heard(result, "decoy")) == 1
    call = await logged_call(screener_server, result)
    assert call.outcome is Outcome.TRAPPED_DECOY
    assert call.keys == "29"
    assert call.stage is Stage.DECOY


async def test_silent_caller_hears_menu_twice_then_goodbye(
    lab: LabProcess, screener_server: Screener
) -> None:
    caller, _number = new_caller()
    max_seconds = 60.0
    result = await place_call(lab, keys=[], caller_id=caller, max_seconds=max_seconds)

    samples, rate = read_wav(result.recording)
    menus = heard(result, "main-menu")
    goodbyes = heard(result, "goodbye")
    assert count_sit(samples, rate) == 2
    assert len(menus) == 2
    assert len(goodbyes) == 1
    assert goodbyes[0] > menus[-1]
    assert result.rings == []
    # Screener, not the caller's time limit, ended the call.
    assert result.duration_seconds < max_seconds
    call = await logged_call(screener_server, result)
    assert call.outcome is Outcome.TRAPPED_SILENT
    assert call.stage is Stage.GOODBYE


async def test_invalid_key_replays_menu(
    lab: LabProcess, screener_server: Screener
) -> None:
    caller, _number = new_caller()
    result = await place_call(
        lab, keys=[(2.0, "5"), (5.0, "1")], caller_id=caller, max_seconds=30
    )

    assert len(heard(result, "main-menu")) == 1
    call = await logged_call(screener_server, result)
    assert call.outcome is Outcome.PASSED_OWNER
    assert call.keys == "51"


async def check_hangup_during_menu(lab: LabProcess, screener: Screener) -> None:
    """Hang up 2.5 s into a call; check it is logged as a hang-up in the menu."""
    caller, _number = new_caller()
    result = await place_call(lab, keys=[], caller_id=caller, max_seconds=2.5)

    call = await logged_call(screener, result)
    assert call.outcome is Outcome.TRAPPED_HANGUP
    assert call.stage is Stage.MENU
    assert result.rings == []


async def test_hangup_during_menu_logged_with_stage(
    lab: LabProcess, screener_server: Screener
) -> None:
    await check_hangup_during_menu(lab, screener_server)


async def test_classic_agi_rings_owner(lab: LabProcess, classic_agi: Screener) -> None:
    caller, number = new_caller()
    result = await place_call(lab, keys=[(4.0, "1")], caller_id=caller, max_seconds=30)

    assert [ring.handset for ring in result.rings] == ["handsets"]
    assert result.rings[0].caller_id_number == number
    call = await logged_call(classic_agi, result)
    assert call.outcome is Outcome.PASSED_OWNER
    assert call.number == "+1" + number


async def test_classic_agi_traps_decoy(lab: LabProcess, classic_agi: Screener) -> None:
    caller, _number = new_caller()
    result = await place_call(
        lab, keys=[(4.0, "2"), (2.0, "9")], caller_id=caller, max_seconds=40
    )

    assert result.rings == []
    assert len(heard(result, "decoy")) == 1
    call = await logged_call(classic_agi, result)
    assert call.outcome is Outcome.TRAPPED_DECOY
    assert call.keys == "29"


async def test_classic_agi_hangup_during_menu_logged_with_stage(
    lab: LabProcess, classic_agi: Screener
) -> None:
    await check_hangup_during_menu(lab, classic_agi)


async def test_classic_agi_keeps_caller_id_off_console(
    lab: LabProcess, classic_agi: Screener
) -> None:
    caller, _number = new_caller()
    result = await place_call(lab, keys=[(2.0, "1")], caller_id=caller, max_seconds=30)

    await logged_call(classic_agi, result)
    console = classic_agi.log.read_text(errors="replace")
    assert "ENV LINE" not in console
    assert "agi_callerid" not in console


def test_classic_agi_wrapper_is_installed(lab: LabProcess) -> None:
    wrapper = lab.settings.host_path(PurePosixPath(lab_module.AGI_WRAPPER))
    assert wrapper.is_file()
