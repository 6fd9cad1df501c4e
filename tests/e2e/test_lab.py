"""Checks of the lab Asterisk itself and of the test helpers."""

from __future__ import annotations

from screener.ami.calls import ami_command, get_global, override_global
from screener.lab import LabProcess


async def test_dialplan_loads(lab: LabProcess) -> None:
    output = await ami_command(lab, "dialplan show screener-incoming")
    assert "Context 'screener-incoming' created by 'pbx_config'" in output
    assert "AGI(${SCREENER_AGI})" in output
    assert "Dial(${SCREENER_HANDSETS},${SCREENER_RING_TIMEOUT})" in output


async def test_override_global_restores_value(lab: LabProcess) -> None:
    before = await get_global(lab, "SCREENER_AGI")

    async with override_global(lab, "SCREENER_AGI", "agi://127.0.0.1:1"):
        during = await get_global(lab, "SCREENER_AGI")

    assert during == "agi://127.0.0.1:1"
    assert await get_global(lab, "SCREENER_AGI") == before
