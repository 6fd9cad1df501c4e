"""Block list and handset feature code through the real Asterisk.

A caller is trapped by silence, a stand-in handset dials *30 in
[screener-features] to block the last caller, and the same caller's next call
gets the tones and "not in service" with no menu, whatever it presses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from screener import config as config_module
from screener.agi.fastagi import FastAgiServer
from screener.ami.calls import agi_port, ami_connection, place_call
from screener.flow import Outcome
from screener.lab import LabProcess
from screener.lists import store as list_store
from screener.lists.features import FeatureHandler
from screener.lists.rules import ListName
from screener.storage import Store, open_store
from tests.audio_analysis import find_occurrences, find_sit, read_wav

CALLER = '"Acme Sales" <5550100777>'
NUMBER = "+15550100777"
SOUNDS = Path(__file__).resolve().parents[2] / "sounds"
FEATURE_SECONDS = 20.0


@dataclass
class Running:
    """The in-process FastAGI server, its database and a session-end signal."""

    store: Store
    sessions_done: asyncio.Queue[None]


@pytest.fixture
async def screener(lab: LabProcess, tmp_path: Path) -> AsyncIterator[Running]:
    config = config_module.parse(
        {
            "server": {"host": "127.0.0.1", "port": agi_port(lab)},
            "database": {"path": str(tmp_path / "calls.sqlite")},
            "menu": {"rounds": 1, "wait_seconds": 1},
            # Only the feature code may block, so the test sees its effect.
            "lists": {"block_after_decoy": False, "block_after_silence": False},
        },
        base_dir=tmp_path,
    )
    store = open_store(config.database.path)
    done: asyncio.Queue[None] = asyncio.Queue()
    server = FastAgiServer(
        config,
        lambda call: list_store.record_and_learn(store, call, config),
        on_call_done=lambda: done.put_nowait(None),
        lists=list_store.LiveLists(store),
        features=FeatureHandler(store, config),
    )
    await server.start()
    try:
        yield Running(store, done)
    finally:
        await server.close()
        store.close()


async def dial_from_handset(lab: LabProcess, code: str) -> None:
    """Originate a stand-in handset that dials ``code`` in [screener-features]."""
    async with ami_connection(lab) as manager:
        response = await manager.send_action(
            {
                "Action": "Originate",
                "Channel": f"Local/{code}@screener-features",
                "Application": "Wait",
                "Data": "15",
                "Timeout": "10000",
                "Async": "true",
            }
        )
    messages = response if isinstance(response, list) else [response]
    assert any(message.get("Response") == "Success" for message in messages)


async def test_block_code_blocks_next_call(lab: LabProcess, screener: Running) -> None:
    first = await place_call(lab, keys=[], caller_id=CALLER, max_seconds=40)
    await asyncio.wait_for(screener.sessions_done.get(), FEATURE_SECONDS)
    assert first.line_variables["SCREENER_ACTION"] == "hangup"
    assert list_store.list_entries(screener.store, ListName.BLOCK) == []

    await dial_from_handset(lab, "*30")
    await asyncio.wait_for(screener.sessions_done.get(), FEATURE_SECONDS)
    blocked = list_store.list_entries(screener.store, ListName.BLOCK)
    assert [entry.value for entry in blocked] == [NUMBER]
    assert blocked[0].source == "handset"

    max_seconds = 30.0
    second = await place_call(
        lab, keys=[(2.0, "1")], caller_id=CALLER, max_seconds=max_seconds
    )
    await asyncio.wait_for(screener.sessions_done.get(), FEATURE_SECONDS)
    assert second.line_variables["SCREENER_ACTION"] == "hangup"
    assert second.rings == []
    assert second.duration_seconds < max_seconds

    call = screener.store.call_by_uniqueid(second.line_uniqueid)
    assert call is not None
    assert call.outcome is Outcome.TRAPPED_BLOCKED
    assert call.keys == ""

    samples, rate = read_wav(second.recording)
    assert find_sit(samples, rate) != []
    not_in_service, _rate = read_wav(SOUNDS / "not-in-service.wav")
    assert find_occurrences(samples, not_in_service) != []
    main_menu, _rate = read_wav(SOUNDS / "main-menu.wav")
    assert find_occurrences(samples, main_menu) == []
