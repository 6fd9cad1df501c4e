"""watch, test-call and status against a real Asterisk, over AMI.

These tests run their own lab instance, because one of them restarts
Asterisk. Its AMI user has exactly the read and write classes of
asterisk-conf/manager_screener.conf, so the tests also prove that those
privileges are enough.
"""

from __future__ import annotations

import asyncio
import configparser
import dataclasses
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from screener import config as config_module
from screener import lab as lab_module
from screener.ami.client import AmiLoginError, AmiSettings, connect
from screener.ami.events import CallStage, StageKind
from screener.ami.testcall import run_test_call
from screener.ami.watch import Backoff, Notice, watch
from screener.lab import LabProcess, LabSettings
from tests.e2e.serving import free_port, screener_serve

PROJECT = Path(__file__).resolve().parents[2]
MANAGER_TEMPLATE = PROJECT / "asterisk-conf" / "manager_screener.conf"
SERVER_START_SECONDS = 15.0
# A screened call ends by itself within this many seconds.
CALL_SECONDS = 60.0
EVENT_WAIT_SECONDS = 30.0


def _template_privileges() -> tuple[str, str]:
    parser = configparser.ConfigParser(
        comment_prefixes=(";",), inline_comment_prefixes=(";",), strict=False
    )
    parser.read(MANAGER_TEMPLATE)
    return parser["screener"]["read"], parser["screener"]["write"]


@dataclass
class ToolsLab:
    """A lab Asterisk with the template's AMI privileges, and Screener beside it."""

    settings: LabSettings
    process: LabProcess
    config_file: Path
    config: config_module.Config

    @property
    def ami(self) -> AmiSettings:
        return AmiSettings(
            host="127.0.0.1",
            port=self.settings.ami_port,
            username=self.settings.ami_user,
            secret=self.settings.ami_secret,
            secret_source="ami.secret",
        )


@pytest.fixture(scope="module")
def tools_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolsLab]:
    """Start a separate lab instance and `screener serve` for this module."""
    read, write = _template_privileges()
    agi_port = free_port()
    settings = LabSettings(
        instance=f"e2e-ami-{os.getpid()}",
        ami_port=free_port(),
        ami_user="screener",
        ami_secret=secrets.token_hex(12),
        agi=f"agi://127.0.0.1:{agi_port}",
        ring_timeout_seconds=10,
        handset_answer_seconds=1.0,
        ami_read=read,
        ami_write=write,
    )
    folder = tmp_path_factory.mktemp("ami-tools")
    config_file = folder / "screener.toml"
    config_file.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {agi_port}\n\n'
        f'[database]\npath = "{folder / "calls.sqlite"}"\n\n'
        "[menu]\nrounds = 2\nwait_seconds = 3\n\n"
        f'[sounds]\nbuild_dir = "{PROJECT / "sounds"}"\n\n'
        f'[ami]\nport = {settings.ami_port}\nusername = "{settings.ami_user}"\n'
        f'secret = "{settings.ami_secret}"\n'
    )
    lab_module.provision(settings.root)
    lab_module.stop(settings)
    process = lab_module.start(settings)
    lab = ToolsLab(settings, process, config_file, config_module.load(config_file))
    try:
        with screener_serve(config_file, agi_port, folder / "serve.log"):
            yield lab
    finally:
        lab_module.stop(settings)


@dataclass
class Watcher:
    """Collects what watch() reports and wakes waiters on each report."""

    stages: list[CallStage] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_stage(self, stage: CallStage) -> None:
        self.stages.append(stage)
        self.changed.set()

    def on_notice(self, notice: Notice) -> None:
        self.notices.append(notice)
        self.changed.set()

    async def wait_until(self, condition: str, timeout: float) -> None:
        """Wait until the named condition holds, or fail the test."""
        checks = {
            "connected": lambda: any(n.connected for n in self.notices),
            "disconnected": lambda: any(not n.connected for n in self.notices),
            "reconnected": lambda: any(
                n.connected and "reconnected" in n.text for n in self.notices
            ),
            "hung up": lambda: any(s.kind is StageKind.HUNG_UP for s in self.stages),
        }
        deadline = time.monotonic() + timeout
        while not checks[condition]():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"watch did not report {condition!r} within {timeout:g} s; "
                    f"notices {[n.text for n in self.notices]}"
                )
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue


@pytest.fixture
async def watcher(tools_lab: ToolsLab) -> AsyncIterator[Watcher]:
    """Run watch() against the tools lab for one test."""
    collected = Watcher()
    task = asyncio.create_task(
        watch(
            tools_lab.ami,
            collected.on_stage,
            collected.on_notice,
            backoff=Backoff(first=0.2, maximum=1.0),
        )
    )
    try:
        await collected.wait_until("connected", EVENT_WAIT_SECONDS)
        yield collected
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _kinds_and_details(stages: list[CallStage]) -> list[tuple[str, str]]:
    return [(stage.kind.value, stage.detail) for stage in stages]


def _in_order(expected: list[str], kinds: list[str]) -> bool:
    """Tell whether ``expected`` occurs in ``kinds`` in order, gaps allowed."""
    remaining = iter(kinds)
    return all(kind in remaining for kind in expected)


async def test_watch_sees_whole_call(tools_lab: ToolsLab, watcher: Watcher) -> None:
    result = await run_test_call(
        tools_lab.config, tools_lab.ami, keys=["1"], max_seconds=CALL_SECONDS
    )
    await watcher.wait_until("hung up", EVENT_WAIT_SECONDS)

    line = result.report.line_uniqueid
    stages = [stage for stage in watcher.stages if stage.uniqueid == line]
    seen = _kinds_and_details(stages)
    kinds = [kind for kind, _detail in seen]
    assert _in_order(
        [
            "ringing",
            "answered",
            "tones",
            "prompt",
            "key",
            "outcome",
            "handsets",
            "hung-up",
        ],
        kinds,
    ), seen
    assert ("tones", "sit-ic") in seen
    assert ("prompt", "main-menu") in seen
    assert ("key", "1") in seen
    assert ("outcome", "ring") in seen


async def test_watch_survives_asterisk_restart(
    tools_lab: ToolsLab, watcher: Watcher
) -> None:
    await asyncio.to_thread(tools_lab.process.stop)
    await watcher.wait_until("disconnected", EVENT_WAIT_SECONDS)
    tools_lab.process = await asyncio.to_thread(lab_module.start, tools_lab.settings)
    await watcher.wait_until("reconnected", EVENT_WAIT_SECONDS)

    result = await run_test_call(
        tools_lab.config, tools_lab.ami, keys=["2", "9"], max_seconds=CALL_SECONDS
    )
    await watcher.wait_until("hung up", EVENT_WAIT_SECONDS)

    line = result.report.line_uniqueid
    seen = _kinds_and_details([s for s in watcher.stages if s.uniqueid == line])
    assert ("key", "2") in seen
    assert ("prompt", "second-menu") in seen
    assert ("key", "9") in seen
    assert ("outcome", "hangup") in seen
    assert "lost the connection" in watcher.notices[1].text


async def test_wrong_secret_names_setting(tools_lab: ToolsLab) -> None:
    wrong = dataclasses.replace(tools_lab.ami, secret="not-the-secret")

    with pytest.raises(AmiLoginError) as raised:
        async with connect(wrong):
            pass

    message = str(raised.value)
    assert "Authentication failed" in message
    assert "ami.username" in message
    assert "ami.secret" in message


def _run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "screener", *arguments],
        capture_output=True,
        text=True,
        timeout=CALL_SECONDS + 30,
    )


def test_watch_cli_wrong_secret_exits(tools_lab: ToolsLab, tmp_path: Path) -> None:
    config = tmp_path / "screener.toml"
    config.write_text(
        tools_lab.config_file.read_text().replace(
            tools_lab.settings.ami_secret, "not-the-secret"
        )
    )

    completed = _run_cli("-c", str(config), "watch")

    assert completed.returncode == 2
    assert "ami.secret" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_status_all_ok(tools_lab: ToolsLab) -> None:
    completed = _run_cli("-c", str(tools_lab.config_file), "status")

    assert completed.returncode == 0, completed.stdout
    assert "OK    AMI       Asterisk 22." in completed.stdout
    assert "context screener-incoming loaded" in completed.stdout
    assert "context screener-test-caller loaded" in completed.stdout
    assert "OK    FastAGI" in completed.stdout
    assert "OK    database" in completed.stdout


def test_status_asterisk_down(tools_lab: ToolsLab, tmp_path: Path) -> None:
    config = tmp_path / "screener.toml"
    closed_port = free_port()
    config.write_text(
        tools_lab.config_file.read_text().replace(
            f"port = {tools_lab.settings.ami_port}", f"port = {closed_port}"
        )
    )

    completed = _run_cli("-c", str(config), "status")

    assert completed.returncode == 1
    assert "FAIL  AMI" in completed.stdout
    assert f"cannot connect to AMI at 127.0.0.1:{closed_port}" in completed.stdout
    assert "fix: start Asterisk" in completed.stdout
    assert "SKIP  dialplan" in completed.stdout


@pytest.mark.parametrize(
    ("keys", "action", "outcome"),
    [
        (["1"], "ring", "passed-owner"),
        (["2", "9"], "hangup", "trapped-decoy"),
        (["none"], "hangup", "trapped-silent"),
    ],
)
def test_call_cli_reports_outcome(
    tools_lab: ToolsLab, keys: list[str], action: str, outcome: str
) -> None:
    completed = _run_cli("-c", str(tools_lab.config_file), "test-call", "--keys", *keys)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"test call OK: SCREENER_ACTION={action}" in completed.stdout
    assert f"call log:      outcome {outcome}" in completed.stdout
    rang = "rang:          stand-in handsets" in completed.stdout
    assert rang == (action == "ring")
