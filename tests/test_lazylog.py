"""Loggers that import logging on first use."""

from __future__ import annotations

import subprocess
import sys

FIRST_USE = """
import sys

from screener import lazylog

calls = []
lazylog.configure_on_first_use(lambda: calls.append("setup"))
log = lazylog.get_logger("screener.example")
assert "logging" not in sys.modules, "imported before first use"
assert calls == [], calls
log.warning("first line")
assert "logging" in sys.modules
assert calls == ["setup"], calls
log.warning("second line")
lazylog.configure_on_first_use(lambda: calls.append("late"))
assert calls == ["setup", "late"], calls
assert log.name == "screener.example"
"""


def test_logging_imported_at_first_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FIRST_USE], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "first line" in result.stderr
    assert "second line" in result.stderr
