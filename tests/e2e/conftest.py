"""Session fixture that runs the lab Asterisk for the end-to-end tests.

Provisioning builds the Debian root once (about half a minute) and reuses it
afterwards. A failure to provision or start makes the tests error, never skip.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from screener import lab as lab_module
from screener.lab import LabProcess, LabSettings
from tests.e2e.lab_calls import LAB_AGI_PORT

# Non-default ports so the tests can run beside a demo lab or a real Asterisk.
E2E_AMI_PORT = 15038


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.asterisk)


@pytest.fixture(scope="session")
def lab_settings() -> LabSettings:
    return LabSettings(
        instance="e2e",
        ami_port=E2E_AMI_PORT,
        ami_user="e2e",
        ami_secret=secrets.token_hex(12),
        agi=f"agi://127.0.0.1:{LAB_AGI_PORT}",
        ring_timeout_seconds=10,
        handset_answer_seconds=1.0,
    )


@pytest.fixture(scope="session")
def lab(lab_settings: LabSettings) -> Iterator[LabProcess]:
    """Start the lab Asterisk for the session and stop it at the end."""
    lab_module.provision(lab_settings.root)
    # An interrupted earlier run may have left this instance running.
    lab_module.stop(lab_settings)
    process = lab_module.start(lab_settings)
    try:
        yield process
    finally:
        process.stop()
