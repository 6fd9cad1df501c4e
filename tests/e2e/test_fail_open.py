"""Fail-open: when Screener cannot take the call, the handsets ring."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from screener.ami.calls import agi_port, place_call
from screener.lab import LabProcess

CALLER = '"Pat Example" <5551234567>'


@contextlib.asynccontextmanager
async def closing_agi_server(port: int) -> AsyncIterator[list[int]]:
    """Run a FastAGI server that accepts each connection and closes it at once.

    Yields a list that counts the accepted connections.
    """
    accepted: list[int] = []

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        accepted.append(1)
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield accepted
    finally:
        server.close()
        await server.wait_closed()


async def test_no_agi_server_rings_handsets(lab: LabProcess) -> None:
    result = await place_call(lab, keys=[], caller_id=CALLER, max_seconds=15)

    assert result.line_variables["AGISTATUS"] == "FAILURE"
    assert len(result.rings) == 1
    ring = result.rings[0]
    assert ring.handset == "handsets"
    assert ring.caller_id_number == "5551234567"
    assert ring.caller_id_name == "Pat Example"


async def test_agi_server_closing_rings_handsets(lab: LabProcess) -> None:
    async with closing_agi_server(agi_port(lab)) as accepted:
        result = await place_call(lab, keys=[], caller_id=CALLER, max_seconds=15)

    assert len(accepted) == 1
    assert result.line_variables["SCREENER_ACTION"] == ""
    assert len(result.rings) == 1
    ring = result.rings[0]
    assert ring.handset == "handsets"
    assert ring.caller_id_number == "5551234567"
    assert ring.caller_id_name == "Pat Example"
