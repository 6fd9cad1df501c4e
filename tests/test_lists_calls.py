"""Allowed, blocked and withheld callers through the session, and feature codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from screener import config as config_module
from screener.agi.fastagi import FastAgiServer
from screener.agi.protocol import Environment
from screener.callerid import CallerId
from screener.config import Config
from screener.errors import ChannelHungUp
from screener.flow import ACTION_VARIABLE, Outcome, Stage
from screener.lists import store as list_store
from screener.lists.features import FeatureHandler, apply_feature, feature_name
from screener.lists.rules import Decision, EntryKind, ListEntry, ListIndex, ListName
from screener.records import CallRecord
from screener.session import run_session
from screener.storage import Store, open_store
from tests.scripted_channel import ScriptedChannel
from tests.test_lists import logged_call

NUMBER = "+15550100123"
DEFAULT = Config()
BLOCKED = ListIndex([ListEntry(ListName.BLOCK, EntryKind.NUMBER, NUMBER)])
ALLOWED = ListIndex([ListEntry(ListName.ALLOW, EntryKind.NUMBER, NUMBER)])


def environment(number: str = "5550100123", name: str = "ACME") -> Environment:
    return Environment(
        {
            "agi_uniqueid": "1.1",
            "agi_channel": "DAHDI/1-1",
            "agi_callerid": number,
            "agi_calleridname": name,
        }
    )


async def session(
    actions: list[str | None],
    lists: ListIndex | None,
    config: Config = DEFAULT,
    number: str = "5550100123",
) -> tuple[ScriptedChannel, CallRecord]:
    channel = ScriptedChannel.pressing(actions)
    calls: list[CallRecord] = []
    call = await run_session(channel, environment(number), config, calls.append, lists)
    return channel, call


def config_with(**tables: dict[str, object]) -> Config:
    return config_module.parse(tables, base_dir=Path("."))


async def test_allowed_caller_rings_without_answer() -> None:
    channel, call = await session([], ALLOWED)
    assert channel.events == [f"set {ACTION_VARIABLE}=ring"]
    assert not channel.answered
    assert channel.played == []
    assert call.outcome is Outcome.PASSED_ALLOWED
    assert call.stage is Stage.HANDSETS


async def test_blocked_caller_hears_tones_then_not_in_service() -> None:
    channel, call = await session(["1", "1"], BLOCKED)
    assert channel.events == [
        "answer",
        "play sit-ic",
        "play not-in-service",
        f"set {ACTION_VARIABLE}=hangup",
        "hangup",
    ]
    assert call.outcome is Outcome.TRAPPED_BLOCKED
    assert call.keys == ""


async def test_blocked_caller_hanging_up_is_still_blocked() -> None:
    _channel, call = await session(["HANGUP"], BLOCKED)
    assert call.outcome is Outcome.TRAPPED_BLOCKED
    assert call.stage is Stage.TONES


class HangsUpOnAnswer(ScriptedChannel):
    async def answer(self) -> None:
        raise ChannelHungUp("caller hung up as the call was answered")


async def test_blocked_caller_hanging_up_on_answer_is_blocked() -> None:
    channel = HangsUpOnAnswer()
    call = await run_session(
        channel, environment(), DEFAULT, lambda _call: None, BLOCKED
    )
    assert call.outcome is Outcome.TRAPPED_BLOCKED
    assert channel.played == []


async def test_blocked_outcome_is_a_trap() -> None:
    assert Outcome.TRAPPED_BLOCKED.is_trap
    assert Outcome.TRAPPED_WITHHELD.is_trap
    assert not Outcome.PASSED_ALLOWED.is_trap


async def test_withheld_caller_blocked_by_choice() -> None:
    config = config_with(lists={"withheld": "block"})
    channel, call = await session([], None, config, number="Anonymous")
    assert channel.played == ["sit-ic", "not-in-service"]
    assert call.outcome is Outcome.TRAPPED_WITHHELD


async def test_withheld_caller_gets_menu_by_default() -> None:
    channel, call = await session([None, "1"], ALLOWED, number="P")
    assert channel.played == ["sit-ic", "main-menu"]
    assert call.outcome is Outcome.PASSED_OWNER


async def test_unlisted_caller_gets_menu() -> None:
    channel, call = await session([None, "1"], BLOCKED, number="5550100999")
    assert channel.played == ["sit-ic", "main-menu"]
    assert call.outcome is Outcome.PASSED_OWNER


async def test_country_code_reaches_lists() -> None:
    uk = ListIndex([ListEntry(ListName.BLOCK, EntryKind.PREFIX, "+4420")])
    config = config_with(callerid={"country_code": "44"})
    _channel, call = await session([], uk, config, number="020 7946 0018")
    assert call.number == "+442079460018"
    assert call.outcome is Outcome.TRAPPED_BLOCKED


class BrokenLists:
    def decide(self, caller: CallerId, withheld: str) -> Decision:
        raise RuntimeError("index corrupted")


async def test_broken_lists_fall_back_to_menu() -> None:
    channel = ScriptedChannel.pressing([None, "1"])
    call = await run_session(
        channel,
        environment(),
        Config(),
        lambda _call: None,
        BrokenLists(),
    )
    assert call.outcome is Outcome.PASSED_OWNER


# Feature codes


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "calls.sqlite")


def log_call(store: Store, number: str, uniqueid: str) -> None:
    store.record_call(
        logged_call(number, Outcome.TRAPPED_DECOY, uniqueid), report=False
    )


def numbers(store: Store, list_name: ListName) -> list[str]:
    return [entry.value for entry in list_store.list_entries(store, list_name)]


def test_block_last_blocks_latest_numbered_call(store: Store) -> None:
    log_call(store, "5550100123", "1")
    log_call(store, "Private", "2")
    assert apply_feature(store, "block-last") == "blocked_last"
    assert numbers(store, ListName.BLOCK) == [NUMBER]


def test_block_last_removes_exact_allow(store: Store) -> None:
    log_call(store, "5550100123", "1")
    apply_feature(store, "allow-last")
    apply_feature(store, "block-last")
    assert numbers(store, ListName.ALLOW) == []
    assert numbers(store, ListName.BLOCK) == [NUMBER]


def test_unblock_last_removes_block(store: Store) -> None:
    log_call(store, "5550100123", "1")
    apply_feature(store, "block-last")
    assert apply_feature(store, "unblock-last") == "unblocked_last"
    assert numbers(store, ListName.BLOCK) == []


def test_allow_last_allows_and_unblocks(store: Store) -> None:
    log_call(store, "5550100123", "1")
    apply_feature(store, "block-last")
    assert apply_feature(store, "allow-last") == "allowed_last"
    assert numbers(store, ListName.ALLOW) == [NUMBER]
    assert numbers(store, ListName.BLOCK) == []


def test_feature_without_calls_says_so(store: Store) -> None:
    assert apply_feature(store, "block-last") == "no_last_caller"


async def test_feature_plays_confirmation(store: Store) -> None:
    log_call(store, "5550100123", "1")
    channel = ScriptedChannel()
    await FeatureHandler(store, Config()).run("block-last", channel, environment())
    assert channel.events == ["answer", "play blocked-last", "hangup"]


async def test_unknown_feature_plays_nothing(store: Store) -> None:
    channel = ScriptedChannel()
    await FeatureHandler(store, Config()).run("erase-all", channel, environment())
    assert channel.played == []


@pytest.mark.parametrize(
    ("variables", "name"),
    [
        ({"agi_network_script": "feature/block-last"}, "block-last"),
        ({"agi_network_script": "/feature/allow-last"}, "allow-last"),
        ({"agi_arg_1": "feature/unblock-last"}, "unblock-last"),
        ({"agi_network_script": ""}, None),
        ({"agi_arg_1": "/etc/screener/screener.toml"}, None),
    ],
)
def test_feature_name_from_environment(
    variables: dict[str, str], name: str | None
) -> None:
    assert feature_name(Environment(variables)) == name


@pytest.fixture
async def feature_server(store: Store) -> AsyncIterator[FastAgiServer]:
    config = config_with(server={"port": 0})
    server = FastAgiServer(
        config,
        lambda call: list_store.record_and_learn(store, call, config),
        lists=list_store.LiveLists(store),
        features=FeatureHandler(store, config),
    )
    await server.start()
    yield server
    await server.close()


async def agi_session(port: int, environment_block: bytes) -> list[str]:
    """Play Asterisk's side: send the environment, reply 200 to each command."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(environment_block)
    commands = []
    async with asyncio.timeout(10):
        while line := await reader.readline():
            commands.append(line.decode().strip())
            writer.write(b"200 result=0 endpos=0\n")
            await writer.drain()
    writer.close()
    return commands


async def test_fastagi_routes_script_path_to_feature(
    store: Store, feature_server: FastAgiServer
) -> None:
    log_call(store, "5550100123", "1")
    block = (
        b"agi_network: yes\nagi_network_script: feature/block-last\n"
        b"agi_channel: DAHDI/2-1\nagi_uniqueid: 2.1\n\n"
    )
    commands = await agi_session(feature_server.port, block)
    assert commands[0] == "ANSWER"
    assert "blocked-last" in commands[1]
    assert numbers(store, ListName.BLOCK) == [NUMBER]


async def test_fastagi_blocks_after_feature(
    store: Store, feature_server: FastAgiServer
) -> None:
    log_call(store, "5550100123", "1")
    apply_feature(store, "block-last")
    call = (
        b"agi_network: yes\nagi_channel: DAHDI/1-2\nagi_uniqueid: 3.1\n"
        b"agi_callerid: 5550100123\nagi_calleridname: ACME\n\n"
    )
    commands = await agi_session(feature_server.port, call)
    assert [command.split()[0:2] for command in commands] == [
        ["ANSWER"],
        ["STREAM", "FILE"],
        ["STREAM", "FILE"],
        ["SET", "VARIABLE"],
        ["HANGUP"],
    ]
    assert "not-in-service" in commands[2]
