"""Configuration files and settings that must fail with one clear line.

``screener`` turns a ScreenerError into ``screener: <key>: <message>`` and
exit status 2. Any other exception reaches the user as a traceback.
"""

from __future__ import annotations

import socket
import tracemalloc
from pathlib import Path

import pytest

from screener import cli
from screener import config as config_module
from screener.errors import ConfigError

EXIT_ERROR = 2
# A prompt is one sentence, so needing far more memory than this means the
# configuration let a placeholder pad itself.
MAX_PROMPT_BYTES = 1_000_000


def test_deep_nesting_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError):
        config_module.load(path)


def test_nul_in_database_path(tmp_path: Path) -> None:
    path = tmp_path / "nul.toml"
    path.write_text('[database]\npath = "log\\u0000.sqlite"\n')
    with pytest.raises(ConfigError, match=r"database\.path"):
        config_module.load(path)


def test_padded_placeholder_rejected(tmp_path: Path) -> None:
    path = tmp_path / "pad.toml"
    path.write_text('[prompts]\nmain_menu = "{owner:>100000000}"\n')
    tracemalloc.start()
    try:
        config = config_module.load(path)
        config.prompt_text("main_menu")
        _current, peak = tracemalloc.get_traced_memory()
    except ConfigError:
        return
    finally:
        tracemalloc.stop()
    assert peak < MAX_PROMPT_BYTES


def test_serve_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "screener.toml"
        path.write_text(f'[server]\nport = {port}\n[database]\npath = "log.sqlite"\n')
        status = cli.main(["--config", str(path), "serve"])
    assert status == EXIT_ERROR
    assert "server.port" in capsys.readouterr().err
