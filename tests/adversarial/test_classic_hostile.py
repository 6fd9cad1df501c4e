"""The classic AGI script against hostile standard input.

Asterisk shows the script's stderr on its console, so pyst2's copy of the
environment block and of every command and reply must not appear there: the
one summary line per call is the only line a normal call writes. Whatever
arrives on stdin, the script must exit by itself, without a traceback, and
log the call it screened.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from screener.agi.protocol import (
    MAX_ENVIRONMENT_LINES,
    MAX_LINE_BYTES,
    MAX_USAGE_LINES,
)

REPOSITORY = Path(__file__).resolve().parents[2]
NUMBER = b"5550100123"
NAME = b"Pat Friend"
# Ample for a session that gets every reply at once. A hung script is killed.
EXIT_SECONDS = 10.0
# A script stuck in a read loop spins a core until killed, so give up sooner.
STUCK_SECONDS = 5.0


def environment(name: bytes = NAME) -> bytes:
    return (
        b"agi_network: no\n"
        b"agi_channel: DAHDI/1-1\n"
        b"agi_uniqueid: classic.1\n"
        b"agi_callerid: " + NUMBER + b"\n"
        b"agi_calleridname: " + name + b"\n"
        b"\n"
    )


# Replies to ANSWER, to STREAM FILE (key 1) and to SET VARIABLE.
OWNER_KEY_REPLIES = b"200 result=0\n200 result=49 endpos=100\n200 result=1\n"


def script_command(tmp_path: Path) -> list[str]:
    config = tmp_path / "screener.toml"
    config.write_text('[database]\npath = "log.sqlite"\n')
    return [sys.executable, "-m", "screener.agi.classic", str(config)]


def run_script(
    tmp_path: Path, stdin: bytes, timeout: float = EXIT_SECONDS
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        script_command(tmp_path),
        input=stdin,
        capture_output=True,
        cwd=REPOSITORY,
        timeout=timeout,
    )


def run_script_stdin_open(tmp_path: Path, stdin: bytes) -> tuple[int, bytes]:
    """Write ``stdin`` but keep it open, so only the script's limits end it.

    Return the exit status and stderr. ``stdin`` must fit in the pipe buffer
    (64 KiB on Linux), or the write blocks once the script stops reading.
    """
    process = subprocess.Popen(
        script_command(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPOSITORY,
    )
    assert process.stdin is not None
    assert process.stderr is not None
    try:
        process.stdin.write(stdin)
        process.stdin.flush()
        returncode = process.wait(STUCK_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"screener-agi still running after {STUCK_SECONDS} s")
    finally:
        process.stdin.close()
    return returncode, process.stderr.read()


def logged_calls(tmp_path: Path) -> list[tuple[str, str, str]]:
    """Return (outcome, keys, name_raw) of every logged call."""
    database = tmp_path / "log.sqlite"
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT outcome, keys, name_raw FROM calls")
        return [(row[0], row[1], row[2]) for row in rows]


def logged_outcomes(tmp_path: Path) -> list[str]:
    return [outcome for outcome, _keys, _name in logged_calls(tmp_path)]


def test_stderr_has_only_summary_line(tmp_path: Path) -> None:
    # The summary names the caller on purpose, as Asterisk's own verbose
    # output of the dialplan does. pyst2's debug copy must not appear.
    result = run_script(tmp_path, environment() + OWNER_KEY_REPLIES)
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert b"passed-owner" in lines[0]
    assert b"agi_" not in result.stderr
    assert b"DAHDI/1-1" not in result.stderr
    assert b"ANSWER" not in result.stderr
    assert b"STREAM FILE" not in result.stderr
    assert b"result=" not in result.stderr


def test_latin1_name_is_logged(tmp_path: Path) -> None:
    result = run_script(tmp_path, environment(b"M\xfcller") + OWNER_KEY_REPLIES)
    assert result.returncode == 0
    assert logged_calls(tmp_path) == [("passed-owner", "1", "M\ufffdller")]


def test_usage_text_at_eof_is_hangup(tmp_path: Path) -> None:
    try:
        result = run_script(
            tmp_path, environment() + b"520-Invalid command\n", STUCK_SECONDS
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"screener-agi still running after {STUCK_SECONDS} s")
    assert b"Traceback" not in result.stderr
    assert logged_outcomes(tmp_path) == ["trapped-hangup"]


def test_endless_usage_text_fails_call(tmp_path: Path) -> None:
    usage = b"520-Invalid command\n" + b"usage line\n" * (MAX_USAGE_LINES + 10)
    returncode, stderr = run_script_stdin_open(tmp_path, environment() + usage)
    assert returncode == 0
    assert b"Traceback" not in stderr
    assert b"usage text exceeds" in stderr
    assert logged_outcomes(tmp_path) == ["failed"]


def test_one_line_usage_reply_fails_call(tmp_path: Path) -> None:
    # Asterisk sends this one-line form for a command without usage text.
    # pyst2 alone reads one more line after it, so both sides would wait.
    reply = b"520 Invalid command syntax.  Proper usage not available.\n"
    returncode, stderr = run_script_stdin_open(tmp_path, environment() + reply)
    assert returncode == 0
    assert b"Traceback" not in stderr
    assert b"rejected the command syntax" in stderr
    assert logged_outcomes(tmp_path) == ["failed"]


def test_overlong_line_fails_call(tmp_path: Path) -> None:
    line = b"200 result=0 " + b"x" * MAX_LINE_BYTES + b"\n"
    returncode, stderr = run_script_stdin_open(tmp_path, environment() + line)
    assert returncode == 0
    assert b"Traceback" not in stderr
    assert b"line longer than" in stderr
    assert logged_outcomes(tmp_path) == ["failed"]


def test_endless_environment_exits(tmp_path: Path) -> None:
    lines = b"".join(
        b"agi_arg_%d: x\n" % number for number in range(MAX_ENVIRONMENT_LINES + 10)
    )
    returncode, stderr = run_script_stdin_open(tmp_path, lines)
    assert returncode == 1
    assert b"Traceback" not in stderr
    assert b"environment block exceeds" in stderr
    assert logged_outcomes(tmp_path) == []


def test_eof_in_environment_exits(tmp_path: Path) -> None:
    result = run_script(tmp_path, environment()[:-1])
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    assert b"end of file" in result.stderr
    assert logged_outcomes(tmp_path) == []


def test_eof_after_answer_is_hangup(tmp_path: Path) -> None:
    result = run_script(tmp_path, environment() + b"200 result=0\n")
    assert b"Traceback" not in result.stderr
    assert logged_outcomes(tmp_path) == ["trapped-hangup"]


def test_hangup_line_is_hangup(tmp_path: Path) -> None:
    result = run_script(tmp_path, environment() + b"200 result=0\nHANGUP\n")
    assert b"Traceback" not in result.stderr
    assert logged_outcomes(tmp_path) == ["trapped-hangup"]


def test_sighup_then_eof_is_hangup(tmp_path: Path) -> None:
    process = subprocess.Popen(
        script_command(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPOSITORY,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdin.write(environment())
    process.stdin.flush()
    assert process.stdout.readline() == b"ANSWER\n"
    process.stdin.write(b"200 result=0\n")
    process.stdin.flush()
    assert process.stdout.readline().startswith(b"STREAM FILE")
    # Asterisk signals a hang-up with SIGHUP, then closes the pipes.
    process.send_signal(signal.SIGHUP)
    process.stdin.close()
    process.wait(EXIT_SECONDS)
    stderr = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    assert b"Traceback" not in stderr
    assert logged_outcomes(tmp_path) == ["trapped-hangup"]


@pytest.mark.parametrize("result", [b"999999", b"2000000", b"120", b"abc"])
def test_non_key_result_fails_call(tmp_path: Path, result: bytes) -> None:
    replies = b"200 result=0\n200 result=" + result + b"\n"
    completed = run_script(tmp_path, environment() + replies)
    assert completed.returncode == 0
    assert b"Traceback" not in completed.stderr
    assert logged_calls(tmp_path) == [("failed", "", "Pat Friend")]


def test_minus_one_before_sighup_is_hangup(tmp_path: Path) -> None:
    # When the caller hangs up during the tones, res_agi.c's command loop
    # replies -1 first and sends SIGHUP on its next pass. The query gets 511.
    replies = (
        b"200 result=0\n"
        b"200 result=-1 endpos=0\n"
        b"511 Command Not Permitted on a dead channel or intercept routine\n"
    )
    completed = run_script(tmp_path, environment() + replies)
    assert completed.returncode == 0
    assert b"Traceback" not in completed.stderr
    assert logged_outcomes(tmp_path) == ["trapped-hangup"]


@pytest.mark.parametrize("result", [b"-1", b"-5"])
def test_negative_result_on_live_channel_fails_call(
    tmp_path: Path, result: bytes
) -> None:
    # A missing sound file also gives -1, and the channel is still up, so
    # CHANNEL STATUS returns 6 ("up").
    replies = b"200 result=0\n200 result=" + result + b"\n200 result=6\n"
    completed = run_script(tmp_path, environment() + replies)
    assert completed.returncode == 0
    assert b"Traceback" not in completed.stderr
    assert logged_calls(tmp_path) == [("failed", "", "Pat Friend")]


def test_reply_without_status_fails_call(tmp_path: Path) -> None:
    result = run_script(tmp_path, environment() + b"200 result=0\nnonsense\n")
    assert b"Traceback" not in result.stderr
    assert b"invalid reply line" in result.stderr
    assert logged_outcomes(tmp_path) == ["failed"]
