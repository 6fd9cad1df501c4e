"""Shared test settings: the event loops that the server's tests run on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

# `screener serve` runs on uvloop where it is installed and on asyncio's own
# loop otherwise, so the tests of the code that talks to sockets on the
# server's loop run on both.
BOTH_LOOPS_MODULES = frozenset(
    {
        "test_fastagi.py",
        "test_callbatch.py",
        "test_lists_calls.py",
        "test_locked_database.py",
    }
)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run the server's tests once per event loop, the others on asyncio's."""
    if item.path.name not in BOTH_LOOPS_MODULES:
        return {"asyncio": asyncio.new_event_loop}
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
