"""The call flow's decisions, driven by a scripted caller."""

from pathlib import Path

from screener import config as config_module
from screener.agi.protocol import Environment
from screener.config import Config
from screener.flow import ACTION_VARIABLE, CallFlow, Outcome, Stage
from screener.records import CallRecord
from screener.session import run_session
from tests.scripted_channel import ScriptedChannel

DEFAULT = Config()
MAIN = ["sit-ic", "main-menu"]


async def run(
    actions: list[str | None], config: Config = DEFAULT
) -> tuple[CallFlow, ScriptedChannel, Outcome]:
    channel = ScriptedChannel.pressing(actions)
    flow = CallFlow(channel, config)
    return flow, channel, await flow.run()


async def test_owner_key_rings_handsets() -> None:
    flow, channel, outcome = await run([None, "1"])
    assert outcome is Outcome.PASSED_OWNER
    assert channel.variables[ACTION_VARIABLE] == "ring"
    assert channel.played == MAIN
    assert not channel.hung_up
    assert flow.progress.keys == ["1"]


async def test_owner_key_during_tones_cuts_them() -> None:
    _flow, channel, outcome = await run(["1"])
    assert outcome is Outcome.PASSED_OWNER
    assert channel.played == ["sit-ic"]


async def test_answer_comes_before_tones() -> None:
    _flow, channel, _outcome = await run(["1"])
    assert channel.events[:2] == ["answer", "play sit-ic"]


async def test_other_member_rings_distinctively() -> None:
    _flow, channel, outcome = await run([None, "2", "1"])
    assert outcome is Outcome.PASSED_OTHER
    assert channel.variables[ACTION_VARIABLE] == "ring-other"
    assert channel.played == [*MAIN, "second-menu"]


async def test_decoy_gets_message_and_hangup() -> None:
    flow, channel, outcome = await run([None, "2", None, "9"])
    assert outcome is Outcome.TRAPPED_DECOY
    assert channel.played == [*MAIN, "second-menu", "decoy"]
    assert channel.variables[ACTION_VARIABLE] == "hangup"
    assert channel.hung_up
    assert flow.progress.keys == ["2", "9"]
    assert flow.progress.stage is Stage.DECOY


async def test_silent_caller_hears_menu_twice_then_goodbye() -> None:
    flow, channel, outcome = await run([])
    assert outcome is Outcome.TRAPPED_SILENT
    assert channel.played == [*MAIN, *MAIN, "goodbye"]
    assert channel.events.count("wait 5") == 2
    assert channel.hung_up
    assert flow.progress.stage is Stage.GOODBYE


async def test_rounds_come_from_configuration() -> None:
    config = config_module.parse({"menu": {"rounds": 3}}, base_dir=Path("."))
    _flow, channel, _outcome = await run([], config)
    assert channel.played == [*MAIN, *MAIN, *MAIN, "goodbye"]


async def test_invalid_key_replays_main_menu() -> None:
    _flow, channel, outcome = await run([None, "5", "1"])
    assert outcome is Outcome.PASSED_OWNER
    assert channel.played == ["sit-ic", "main-menu", "main-menu"]


async def test_invalid_key_replays_second_menu() -> None:
    _flow, channel, outcome = await run(["2", "7", "9"])
    assert outcome is Outcome.TRAPPED_DECOY
    assert channel.played == ["sit-ic", "second-menu", "second-menu", "decoy"]


async def test_endless_invalid_keys_end_in_goodbye() -> None:
    _flow, channel, outcome = await run(["5"] * 20)
    assert outcome is Outcome.TRAPPED_INVALID
    assert channel.played[-1] == "goodbye"
    assert channel.hung_up


async def test_configured_keys_are_used() -> None:
    config = config_module.parse(
        {"keys": {"owner": "7", "others": "8"}}, base_dir=Path(".")
    )
    _flow, _channel, outcome = await run(["7"], config)
    assert outcome is Outcome.PASSED_OWNER


async def test_sounds_played_from_asterisk_dir() -> None:
    channel = ScriptedChannel.pressing(["1"])
    recorded: list[str] = []

    async def stream_file(sound: str, escape_digits: str = "") -> str | None:
        recorded.append(sound)
        return "1"

    channel.stream_file = stream_file  # type: ignore[method-assign]
    await CallFlow(channel, DEFAULT).run()
    assert recorded == ["/var/lib/asterisk/sounds/screener/sit-ic"]


ENVIRONMENT = Environment(
    {
        "agi_uniqueid": "1700000000.1",
        "agi_channel": "DAHDI/1-1",
        "agi_callerid": "(555) 010-0123",
        "agi_calleridname": "ACME SALES",
    }
)


async def session(actions: list[str | None]) -> CallRecord:
    channel = ScriptedChannel(actions=list(actions))
    logged: list[CallRecord] = []
    call = await run_session(channel, ENVIRONMENT, DEFAULT, logged.append)
    assert logged == [call]
    return call


async def test_hangup_during_tones_is_trap_at_tones() -> None:
    call = await session(["HANGUP"])
    assert call.outcome is Outcome.TRAPPED_HANGUP
    assert call.stage is Stage.TONES


async def test_hangup_during_second_menu_keeps_stage() -> None:
    call = await session(["2", "HANGUP"])
    assert call.outcome is Outcome.TRAPPED_HANGUP
    assert call.stage is Stage.SECOND_MENU
    assert call.keys == "2"


async def test_hangup_during_decoy_message_stays_decoy() -> None:
    call = await session(["2", "9", "HANGUP"])
    assert call.outcome is Outcome.TRAPPED_DECOY


async def test_session_record_has_caller_forms() -> None:
    call = await session(["1"])
    assert call.number_raw == "(555) 010-0123"
    assert call.number == "+15550100123"
    assert call.name_raw == "ACME SALES"
    assert call.uniqueid == "1700000000.1"
    assert call.outcome is Outcome.PASSED_OWNER


async def test_missing_sound_fails_open() -> None:
    channel = ScriptedChannel(actions=[], missing_sounds={"sit-ic"})
    call = await run_session(channel, ENVIRONMENT, DEFAULT, lambda _call: None)
    assert call.outcome is Outcome.FAILED
    assert ACTION_VARIABLE not in channel.variables


async def test_flow_bug_fails_open_and_is_logged() -> None:
    channel = ScriptedChannel(actions=[])

    async def broken(seconds: float) -> str | None:
        raise ZeroDivisionError("bug")

    channel.wait_for_digit = broken  # type: ignore[method-assign]
    logged: list[CallRecord] = []
    call = await run_session(channel, ENVIRONMENT, DEFAULT, logged.append)
    assert call.outcome is Outcome.FAILED
    assert ACTION_VARIABLE not in channel.variables
    assert logged == [call]


async def test_recorder_failure_does_not_raise() -> None:
    def broken(_call: CallRecord) -> None:
        raise OSError("disk full")

    call = await run_session(ScriptedChannel(["1"]), ENVIRONMENT, DEFAULT, broken)
    assert call.outcome is Outcome.PASSED_OWNER
