"""Session fixture that runs the lab Asterisk for the end-to-end tests.

Provisioning builds the Debian root once (about half a minute) and reuses it
afterwards. A failure to provision or start makes the tests error, never skip.
Each pytest process gets its own lab instance and free loopback ports, so
several test runs can share one root at the same time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from screener import lab as lab_module
from screener.lab import LabProcess, LabSettings
from tests.e2e.serving import free_port

INSTANCE_PREFIX = "e2e-"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.asterisk)


def _stop_orphaned_instances(root: Path) -> None:
    """Stop e2e instances whose pytest process no longer exists.

    An interrupted run leaves its Asterisk running; the pid in the instance
    name tells whether its owner is still alive.
    """
    run_dir = lab_module.resolve_in_root(root, PurePosixPath("/run"))
    for folder in (run_dir / "screener-lab").glob(f"{INSTANCE_PREFIX}*"):
        owner = folder.name.removeprefix(INSTANCE_PREFIX)
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            lab_module.stop(LabSettings(root=root, instance=folder.name))


@pytest.fixture(scope="session")
def lab_settings() -> LabSettings:
    return LabSettings(
        instance=f"{INSTANCE_PREFIX}{os.getpid()}",
        ami_port=free_port(),
        ami_user="e2e",
        ami_secret=secrets.token_hex(12),
        agi=f"agi://127.0.0.1:{free_port()}",
        ring_timeout_seconds=10,
        handset_answer_seconds=1.0,
    )


@pytest.fixture(scope="session")
def lab(lab_settings: LabSettings) -> Iterator[LabProcess]:
    """Start the lab Asterisk for the session and stop it at the end."""
    lab_module.provision(lab_settings.root)
    _stop_orphaned_instances(lab_settings.root)
    process = lab_module.start(lab_settings)
    try:
        yield process
    finally:
        process.stop()
