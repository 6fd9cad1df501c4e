"""The AGI protocol core, on literal wire text as Asterisk 22 sends it."""

import pytest

from screener.agi.protocol import (
    MAX_ENVIRONMENT_BYTES,
    EnvironmentParser,
    Status,
    build_command,
    is_usage_continuation,
    parse_environment,
    parse_reply_line,
    quote,
)
from screener.errors import InvalidArgument, ProtocolError

# The start of a FastAGI session from Asterisk 22 on a Local channel.
ENVIRONMENT = """agi_network: yes
agi_network_script: screen
agi_request: agi://127.0.0.1:4573/screen?x=a: b
agi_channel: Local/caller@screener-lab-caller-00000001;1
agi_language: en
agi_type: Local
agi_uniqueid: 1764860000.12
agi_version: 22.5.0
agi_callerid: 5550100123
agi_calleridname: ACME Sales
agi_callingpres: 0
agi_context: screener-incoming
agi_extension: s
agi_priority: 3
agi_enhanced: 0.0
agi_accountcode:\x20
agi_threadid: 140234

"""


def test_environment_parses_known_fields() -> None:
    environment = parse_environment(ENVIRONMENT.split("\n"))
    assert environment.uniqueid == "1764860000.12"
    assert environment.callerid == "5550100123"
    assert environment.calleridname == "ACME Sales"
    assert environment.channel.startswith("Local/caller@")


def test_environment_value_may_contain_separator() -> None:
    environment = parse_environment(ENVIRONMENT.split("\n"))
    assert environment.get("request") == "agi://127.0.0.1:4573/screen?x=a: b"


def test_environment_empty_value_kept() -> None:
    environment = parse_environment(ENVIRONMENT.split("\n"))
    assert environment.get("accountcode") == ""


def test_environment_missing_blank_line_rejected() -> None:
    with pytest.raises(ProtocolError, match="blank line"):
        parse_environment(["agi_network: yes"])


def test_environment_garbage_line_rejected() -> None:
    with pytest.raises(ProtocolError, match="invalid environment line"):
        parse_environment(["GET / HTTP/1.1", ""])


def test_environment_without_channel_rejected() -> None:
    # A lone blank line would otherwise start a call with no channel at all.
    with pytest.raises(ProtocolError, match="agi_channel"):
        parse_environment([""])
    with pytest.raises(ProtocolError, match="agi_channel"):
        parse_environment(["agi_network: yes", ""])


def test_environment_control_characters_become_spaces() -> None:
    lines = ["agi_channel: DAHDI/1-1", "agi_uniqueid: 17.1\rFAKE\x1b[2J\x85", ""]
    environment = parse_environment(lines)
    assert environment.uniqueid == "17.1 FAKE [2J "


def test_environment_oversized_block_rejected() -> None:
    parser = EnvironmentParser()
    line = "agi_padding: " + "x" * 1000
    with pytest.raises(ProtocolError, match="exceeds"):
        for _ in range(MAX_ENVIRONMENT_BYTES // len(line) + 2):
            parser.feed(line)


@pytest.mark.parametrize(
    ("line", "status", "result", "data", "fields"),
    [
        ("200 result=0", Status.SUCCESS, "0", None, {}),
        ("200 result=49 endpos=3200", Status.SUCCESS, "49", None, {"endpos": "3200"}),
        ("200 result=0 (timeout)", Status.SUCCESS, "0", "timeout", {}),
        ("200 result=-1 (hangup)", Status.SUCCESS, "-1", "hangup", {}),
        (
            "200 result=1 (a value (nested))",
            Status.SUCCESS,
            "1",
            "a value (nested)",
            {},
        ),
        ("100 result=0 Trying...", Status.TRYING, "0", None, {}),
        ("510 Invalid or unknown command", Status.INVALID_COMMAND, "", None, {}),
        (
            "511 Command Not Permitted on a dead channel or intercept routine",
            Status.DEAD_CHANNEL,
            "",
            None,
            {},
        ),
        (
            "520-Invalid command syntax.  Proper usage follows:",
            Status.USAGE,
            "",
            None,
            {},
        ),
    ],
)
def test_reply_line_forms(
    line: str, status: Status, result: str, data: str | None, fields: dict[str, str]
) -> None:
    reply = parse_reply_line(line)
    assert reply.status is status
    assert reply.result == result
    assert reply.data == data
    assert dict(reply.fields) == fields


def test_reply_digit_is_ascii_code() -> None:
    assert parse_reply_line("200 result=49 endpos=100").digit() == "1"
    assert parse_reply_line("200 result=35").digit() == "#"


def test_reply_digit_none_for_zero_and_failure() -> None:
    assert parse_reply_line("200 result=0 (timeout)").digit() is None
    assert parse_reply_line("200 result=-1").digit() is None


def test_reply_digit_rejects_non_key() -> None:
    with pytest.raises(ProtocolError, match="not a DTMF key"):
        parse_reply_line("200 result=65000").digit()


@pytest.mark.parametrize("line", ["", "hello", "abc result=1", "999 result=1"])
def test_reply_garbage_rejected(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_reply_line(line)


def test_usage_text_ends_at_520_space() -> None:
    assert is_usage_continuation("Usage: STREAM FILE <filename> <escape_digits>")
    assert not is_usage_continuation("520 End of proper usage.")


def test_command_quotes_text_arguments() -> None:
    command = build_command("STREAM FILE", "/snd/sit-ic", "12", 0)
    assert command == b'STREAM FILE "/snd/sit-ic" "12" 0\n'


def test_quote_escapes_quote_and_backslash() -> None:
    assert quote('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'


@pytest.mark.parametrize("bad", ["a\nHANGUP", "a\rb", "a\0b"])
def test_command_rejects_framing_bytes(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        build_command("SET VARIABLE", "NAME", bad)
