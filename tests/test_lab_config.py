"""The lab's generated Asterisk configuration, without starting Asterisk."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from screener.lab import LabError, LabSettings, render_config, write_config

MODULE_DIR = PurePosixPath("/usr/lib/x86_64-linux-gnu/asterisk/modules")


def test_extra_dialplan_included_last(tmp_path: Path) -> None:
    extra = tmp_path / "extensions_bench.conf"
    settings = LabSettings(root=tmp_path, extra_dialplan=(extra,))
    extensions = render_config(settings, MODULE_DIR)["extensions.conf"]
    lines = extensions.splitlines()
    assert lines[-1] == '#include "extensions_bench.conf"'
    assert lines[-2] == '#include "extensions_screener_test.conf"'


def test_no_extra_dialplan_by_default(tmp_path: Path) -> None:
    extensions = render_config(LabSettings(root=tmp_path), MODULE_DIR)
    assert extensions["extensions.conf"].endswith(
        '#include "extensions_screener_test.conf"\n'
    )


def test_extra_dialplan_name_clash_rejected(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/x86_64-linux-gnu/asterisk/modules").mkdir(parents=True)
    clash = tmp_path / "extensions.conf"
    clash.write_text("[other]\n")
    settings = LabSettings(root=tmp_path, extra_dialplan=(clash,))
    with pytest.raises(LabError, match="would replace"):
        write_config(settings)
