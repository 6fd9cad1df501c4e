"""The ``screener`` commands against hostile stored data and arguments.

The call log keeps caller ID exactly as received, so whatever prints it must
not pass terminal control sequences through. Bad arguments must end in one
``screener:`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from screener import cli
from screener.flow import Outcome, Stage
from screener.records import CallRecord
from screener.storage import open_store

EXIT_ERROR = 2
# Clears the screen, then sets the terminal window title.
ESCAPES = "\x1b[2J\x1b]0;PWNED\x07"
TOO_BIG = "99999999999999999999"


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "screener.toml"
    path.write_text('[database]\npath = "log.sqlite"\n')
    return path


def log_call(tmp_path: Path, number_raw: str) -> None:
    store = open_store(tmp_path / "log.sqlite")
    try:
        store.record_call(
            CallRecord(
                started_at=datetime(2026, 12, 4, 15, 0, tzinfo=UTC),
                uniqueid="1733324400.42",
                channel="DAHDI/1-1",
                number_raw=number_raw,
                name_raw="",
                number=None,
                name=None,
                presence="invalid",
                keys="",
                stage=Stage.GOODBYE,
                outcome=Outcome.TRAPPED_SILENT,
                duration=1.0,
            ),
            report=True,
        )
    finally:
        store.close()


@pytest.mark.parametrize("command", [["calls"], ["mail", "outbox"]])
def test_raw_number_printed_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    config = write_config(tmp_path)
    log_call(tmp_path, ESCAPES)
    assert cli.main(["--config", str(config), *command]) == 0
    output = capsys.readouterr().out
    assert "\x1b" not in output
    assert "\x07" not in output


@pytest.mark.parametrize(
    "command", [["calls", "-n", TOO_BIG], ["mail", "retry", TOO_BIG]]
)
def test_huge_number_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    config = write_config(tmp_path)
    assert cli.main(["--config", str(config), *command]) == EXIT_ERROR
    assert capsys.readouterr().err.startswith("screener:")


def test_export_to_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    target = tmp_path / "missing" / "block.csv"
    status = cli.main(["--config", str(config), "block", "export", str(target)])
    assert status == EXIT_ERROR
    assert capsys.readouterr().err.startswith("screener:")
