"""Name patterns of the block list against catastrophic backtracking.

Every list decision runs on the FastAGI event loop before the call is
answered, so a slow pattern stalls every call in progress. A pattern must
either be rejected when it is added or decide any caller name quickly.
"""

from __future__ import annotations

import time

import pytest

from screener import callerid
from screener.errors import ListError
from screener.lists.rules import (
    EntryKind,
    ListEntry,
    ListIndex,
    ListName,
    compile_pattern,
)

# Nested quantifiers: the time to fail a match grows exponentially with the
# number of "a" characters.
NESTED_QUANTIFIERS = ["(a+)+$", "(a|a)*$", "^(\\w+\\s?)*$"]
# 20 characters keep this test under a second while it fails, and are well
# within what a SIP display name can carry.
HOSTILE_NAME = "a" * 20 + "!"
# Five times the 1 ms budget of a decision. An ordinary pattern takes microseconds.
MAX_DECISION_SECONDS = 0.005


@pytest.mark.parametrize("pattern", NESTED_QUANTIFIERS)
def test_nested_quantifier_bounded(pattern: str) -> None:
    try:
        compile_pattern(pattern)
    except ListError:
        return
    entry = ListEntry(ListName.BLOCK, EntryKind.NAME, pattern)
    index = ListIndex([entry])
    caller = callerid.parse("5550100123", HOSTILE_NAME)
    started = time.perf_counter()
    index.decide(caller, "menu")
    elapsed = time.perf_counter() - started
    assert elapsed < MAX_DECISION_SECONDS
