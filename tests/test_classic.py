"""The classic AGI script as Asterisk runs it: a process on stdin and stdout."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from screener.flow import Outcome
from screener.lists import store as list_store
from screener.lists.rules import EntryKind, ListEntry, ListName
from screener.storage import open_store

ENVIRONMENT = (
    "agi_request: screener-agi\n"
    "agi_channel: DAHDI/1-1\n"
    "agi_uniqueid: 1700000000.9\n"
    "agi_callerid: 5550100123\n"
    "agi_calleridname: ACME\n"
    "\n"
)
# Each command gets a success reply, so no key is ever pressed.
REPLY = "200 result=0 endpos=800\n"
TIMEOUT_SECONDS = 30


def run_script(
    arguments: list[str],
    tmp_path: Path,
    after_stdout_closes: Callable[[subprocess.Popen[str]], None] | None = None,
) -> tuple[list[str], str]:
    """Play Asterisk's side of one session; return the commands and stderr.

    ``after_stdout_closes`` runs once the script has closed its stdout, while
    its stdin is still open.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "screener.agi.classic", *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(ENVIRONMENT)
    process.stdin.flush()
    commands = []
    for line in process.stdout:
        commands.append(line.strip())
        process.stdin.write(REPLY)
        process.stdin.flush()
    if after_stdout_closes is not None:
        after_stdout_closes(process)
    process.stdin.close()
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.wait(TIMEOUT_SECONDS)
    return commands, stderr


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "screener.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path / "calls.sqlite"}"\n'
        "[menu]\nrounds = 1\nwait_seconds = 1\n"
    )
    return config


def test_silent_caller_hears_menu_then_goodbye(tmp_path: Path) -> None:
    commands, _stderr = run_script([str(write_config(tmp_path))], tmp_path)
    assert commands[0] == "ANSWER"
    assert "sit-ic" in commands[1]
    assert any("goodbye" in command for command in commands)
    assert commands[-1] == "HANGUP"


def test_sound_path_with_space_is_quoted(tmp_path: Path) -> None:
    # Asterisk splits an unquoted argument at the space and replies 520.
    config = write_config(tmp_path)
    with config.open("a") as settings:
        settings.write('[sounds]\nasterisk_dir = "/srv/my sounds"\n')
    commands, _stderr = run_script([str(config)], tmp_path)
    assert commands[1] == 'STREAM FILE "/srv/my sounds/sit-ic" "0123456789*#" 0'
    assert commands[-2] == 'SET VARIABLE "SCREENER_ACTION" "hangup"'


def test_silent_caller_logged_in_new_database(tmp_path: Path) -> None:
    # The database does not exist before the call: the lists are empty, and
    # the call log is created when the call is logged.
    run_script([str(write_config(tmp_path))], tmp_path)
    store = open_store(tmp_path / "calls.sqlite")
    calls = store.recent_calls(10)
    store.close()
    assert [call.outcome for call in calls] == [Outcome.TRAPPED_SILENT]
    assert calls[0].number == "+15550100123"


def test_stdout_closes_before_log_write(tmp_path: Path) -> None:
    # Asterisk rings the handsets only once the script's stdout closes, so a
    # call-log write that waits for a lock must not hold the call.
    config = write_config(tmp_path)
    database = tmp_path / "calls.sqlite"
    open_store(database).close()
    blocker = sqlite3.connect(database)
    blocker.execute("BEGIN EXCLUSIVE")
    running_at_close: list[bool] = []

    def release_lock(process: subprocess.Popen[str]) -> None:
        running_at_close.append(process.poll() is None)
        blocker.rollback()
        blocker.close()

    commands, _stderr = run_script([str(config)], tmp_path, release_lock)
    assert commands[-1] == "HANGUP"
    assert running_at_close == [True]

    store = open_store(database)
    calls = store.recent_calls(10)
    store.close()
    assert [call.outcome for call in calls] == [Outcome.TRAPPED_SILENT]


def test_allowed_caller_rings_without_answer(tmp_path: Path) -> None:
    store = open_store(tmp_path / "calls.sqlite")
    list_store.add_entry(
        store, ListEntry(ListName.ALLOW, EntryKind.NUMBER, "+15550100123")
    )
    store.close()
    commands, _stderr = run_script([str(write_config(tmp_path))], tmp_path)
    assert commands == ['SET VARIABLE "SCREENER_ACTION" "ring"']


def test_blocked_prefix_skips_menu(tmp_path: Path) -> None:
    store = open_store(tmp_path / "calls.sqlite")
    list_store.add_entry(store, ListEntry(ListName.BLOCK, EntryKind.PREFIX, "+1555"))
    store.close()
    commands, _stderr = run_script([str(write_config(tmp_path))], tmp_path)
    assert commands[0] == "ANSWER"
    assert any("not-in-service" in command for command in commands)
    assert not any("main-menu" in command for command in commands)


def test_unreadable_database_still_screens(tmp_path: Path) -> None:
    # A folder where the database file should be: it cannot be opened.
    (tmp_path / "calls.sqlite").mkdir()
    commands, stderr = run_script([str(write_config(tmp_path))], tmp_path)
    assert commands[0] == "ANSWER"
    assert any("main-menu" in command for command in commands)
    assert "no allow or block lists for this call" in stderr
    assert "could not log the call: cannot open database" in stderr
    # One line per fault on Asterisk's console, with no traceback.
    assert "Traceback" not in stderr


def test_feature_after_config_path_runs_feature(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    commands, stderr = run_script([str(config), "feature/block-last"], tmp_path)
    assert not any("sit-ic" in command for command in commands)
    assert any("no-last-caller" in command for command in commands)
    # Logged through the same handler and format as a screened call.
    assert "screener-agi INFO screener.lists.features: feature block-last" in stderr


def test_pyst2_debug_kept_off_stderr(tmp_path: Path) -> None:
    _commands, stderr = run_script([str(write_config(tmp_path))], tmp_path)
    # pyst2 would copy the environment and every command and reply here.
    assert "ENV LINE" not in stderr
    assert "agi_callerid" not in stderr
    assert "RESULT_LINE" not in stderr
    # Screener's own summary is the one line per call.
    assert len(stderr.splitlines()) == 1


def test_bad_config_exits_nonzero_before_commands(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[menu]\nrounds = 0\n")
    process = subprocess.run(
        [sys.executable, "-m", "screener.agi.classic", str(config)],
        input=ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert process.returncode == 1
    assert process.stdout == ""
    assert "menu.rounds" in process.stderr


def test_missing_config_from_environment_exits_nonzero(tmp_path: Path) -> None:
    # A typo in $SCREENER_CONFIG must not screen calls with the defaults.
    absent = tmp_path / "absent.toml"
    process = subprocess.run(
        [sys.executable, "-m", "screener.agi.classic"],
        input=ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        env=dict(os.environ, SCREENER_CONFIG=str(absent)),
    )
    assert process.returncode == 1
    assert process.stdout == ""
    assert "configuration file not found" in process.stderr
    assert str(absent) in process.stderr


# Stands between the script and its stdout, and reports on stderr which of
# these modules, and which of Screener's, were loaded when the first command
# was written.
FIRST_COMMAND_PROBE = """
import sys

WATCHED = ("logging", "asyncio", "pydub", "aiosmtplib", "email", "screener.storage")


class Probe:
    def __init__(self, stream):
        self.stream = stream
        self.reported = False

    def write(self, text):
        if not self.reported:
            self.reported = True
            loaded = [name for name in WATCHED if name in sys.modules]
            sys.stderr.write("LOADED " + ",".join(loaded) + "\\n")
            ours = [name for name in sys.modules if name.startswith("screener.")]
            sys.stderr.write("SCREENER " + ",".join(ours) + "\\n")
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


sys.stdout = Probe(sys.stdout)

import pprint

format_for_debug = pprint.pformat


def reported_pformat(*arguments, **options):
    if not sys.stdout.reported:
        sys.stderr.write("PFORMAT called\\n")
    return format_for_debug(*arguments, **options)


pprint.pformat = reported_pformat
from screener.agi.classic import main

sys.exit(main(sys.argv[1:]))
"""


def test_first_command_precedes_slow_imports(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    process = subprocess.run(
        [sys.executable, "-c", FIRST_COMMAND_PROBE, str(config)],
        input=ENVIRONMENT + REPLY * 20,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=TIMEOUT_SECONDS,
    )
    assert process.stdout.startswith("ANSWER")
    loaded = [line for line in process.stderr.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED "]
    # pyst2 formats the environment block for its debug copy, which on Python
    # 3.14 imports dataclasses. Screener reads the block itself.
    # NOTE: pyst2 also formats every reply, so that import still happens at
    # the first reply, before the tones.
    assert "PFORMAT called" not in process.stderr
    # The call's summary line is still logged, after the first command.
    assert "screener-agi INFO" in process.stderr


def _modules_before_first_command(tmp_path: Path) -> list[str]:
    config = write_config(tmp_path)
    process = subprocess.run(
        [sys.executable, "-c", FIRST_COMMAND_PROBE, str(config)],
        input=ENVIRONMENT + REPLY * 20,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=TIMEOUT_SECONDS,
    )
    assert process.stdout.startswith("ANSWER")
    lines = [
        line for line in process.stderr.splitlines() if line.startswith("SCREENER")
    ]
    assert len(lines) == 1
    return lines[0].removeprefix("SCREENER ").split(",")


def test_first_command_path_defines_no_dataclass(tmp_path: Path) -> None:
    # A frozen dataclass costs 0.5-0.9 ms to define, so records are used.
    modules = _modules_before_first_command(tmp_path)
    assert "screener.config" in modules
    for name in modules:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == name:
                assert not dataclasses.is_dataclass(value), f"{name}.{value.__name__}"


def test_first_command_path_imports_no_typing(tmp_path: Path) -> None:
    # typing costs about 2.5 ms to import on CPython 3.14, where nothing else
    # before the first command loads it.
    modules = _modules_before_first_command(tmp_path)
    assert "screener.agi.protocol" in modules
    for name in modules:
        source = importlib.util.find_spec(name)
        assert source is not None
        assert source.origin is not None
        tree = ast.parse(Path(source.origin).read_text())
        lines = _runtime_typing_imports(tree)
        assert not lines, f"{name} imports typing at run time, lines {lines}"


def _runtime_typing_imports(tree: ast.Module) -> list[int]:
    """Return the lines of typing imports outside ``if TYPE_CHECKING:`` blocks."""
    lines = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import) and any(
            alias.name == "typing" for alias in node.names
        ):
            lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "typing":
            lines.append(node.lineno)
        pending.extend(ast.iter_child_nodes(node))
    return lines
