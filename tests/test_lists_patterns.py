"""Name patterns that could backtrack catastrophically are rejected.

Timing asserts use a bound far above the expected time (about 1 ms at
worst), so that a slow or busy machine does not make them flaky. They
guard against exponential blow-up, not against small regressions.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from screener.callerid import CallerId, parse
from screener.cli import main
from screener.errors import ListError
from screener.lists import lookup
from screener.lists import store as list_store
from screener.lists.files import read_csv
from screener.lists.patterns import MAX_NAME_LENGTH, check_backtracking
from screener.lists.rules import (
    EntryKind,
    ListEntry,
    ListIndex,
    ListName,
    Verdict,
    compile_pattern,
)
from screener.storage import Store, open_store

BLOCK = ListName.BLOCK
NAME = EntryKind.NAME
LEGITIMATE = [
    r"^V\d+$",
    r"(?i)^acme",
    "sales|marketing",
    r"^\w+ \w+$",
    r"acme.*corp",
    r"^(mr|mrs)\.? \w+",
    r"\bsurvey\b",
    r"^(\d{3})+$",
    r"^[A-Z]+ [A-Z]+$",
    "^" + "|".join(f"vendor{i}" for i in range(20)),
]
NESTED = ["(a+)+$", "(a|a)*$", r"^(\w+\s?)*$", "(a{1,64}){1,10}$", "(ab|cd)+x"]
REJECTED_CONSTRUCTS = {
    r"(a)\1": "backreference",
    r"(?P<x>a)(?P=x)": "backreference",
    r"(a)?(?(1)b|c)": "conditional group",
    r"acme(?=corp)": "lookahead or lookbehind",
    r"(?<!x)acme": "negative lookahead or lookbehind",
}
# Patterns that pass the check with the most work left: many ways to split
# the name, just under the bound.
WORST_ACCEPTED = [
    "^" + "a?" * 10 + "a" * 10 + "$",
    "a?" * 5 + "a" * 5 + "$",
    r"\w+$",
    r"^\w*\w*$",
    r"^[a ]*[a ]*!",
    r"acme.*corp",
    "^" + "(a|aa)" * 8 + "$",
    "^" + "(?:a|b|c|d)" * 5 + "$",
]
# Names that make a failing search explore every split of a long run.
HOSTILE_NAMES = [
    "a" * MAX_NAME_LENGTH + "!",
    "a" * (MAX_NAME_LENGTH - 1) + " ",
    "a " * (MAX_NAME_LENGTH // 2) + "!",
    "ab" * (MAX_NAME_LENGTH // 2) + "!",
    # Longer than a name the matcher reads: only the first 64 characters count.
    "a" * 10_000 + "!",
]
MAX_DECISION_SECONDS = 0.05


def caller(name: str) -> CallerId:
    return parse("5550100123", name)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "calls.sqlite")


@pytest.mark.parametrize("pattern", LEGITIMATE)
def test_legitimate_pattern_accepted(pattern: str) -> None:
    assert compile_pattern(pattern).pattern == pattern


def test_legitimate_patterns_still_match() -> None:
    index = ListIndex([ListEntry(BLOCK, NAME, pattern) for pattern in LEGITIMATE])
    for name in ["ACME Corp", "Telemarketing", "Jane Doe", "Mr. Smith", "Vendor7"]:
        assert index.decide(caller(name), "menu").verdict is Verdict.BLOCK, name
    assert index.decide(caller("Jane"), "menu").verdict is Verdict.SCREEN


@pytest.mark.parametrize("pattern", NESTED)
def test_nested_repeat_rejected(pattern: str) -> None:
    with pytest.raises(ListError) as error:
        compile_pattern(pattern)
    message = str(error.value)
    assert repr(pattern) in message
    assert "contains a quantifier or an alternation" in message


@pytest.mark.parametrize(("pattern", "construct"), REJECTED_CONSTRUCTS.items())
def test_unbounded_construct_rejected(pattern: str, construct: str) -> None:
    with pytest.raises(ListError) as error:
        compile_pattern(pattern)
    message = str(error.value)
    assert repr(pattern) in message
    assert f"uses a {construct}" in message


@pytest.mark.parametrize(
    "pattern",
    [
        r"\w+ \w+",
        r"\w*\w*$",
        r"^\w+ \w+ \w+$",
        "a?" * 6 + "a" * 6,
        "^" + "a?" * 11 + "a" * 11 + "$",
        ".*acme.*",
    ],
)
def test_too_many_ways_rejected(pattern: str) -> None:
    with pytest.raises(ListError) as error:
        compile_pattern(pattern)
    message = str(error.value)
    assert repr(pattern) in message
    assert "could be slow to match" in message
    assert "Anchor it with ^" in message


def test_long_pattern_rejected() -> None:
    with pytest.raises(ListError, match="longer than 200 characters"):
        compile_pattern("a" * 201)


@pytest.mark.parametrize("pattern", WORST_ACCEPTED)
def test_worst_accepted_pattern_fast(pattern: str) -> None:
    check_backtracking(pattern)
    index = ListIndex([ListEntry(BLOCK, NAME, pattern + "x^")])
    # "x^" can never match, so every search runs to failure.
    for name in HOSTILE_NAMES:
        who = caller(name)
        assert who.name is not None
        started = time.perf_counter()
        verdict = index.decide(who, "menu").verdict
        elapsed = time.perf_counter() - started
        assert verdict is Verdict.SCREEN
        assert elapsed < MAX_DECISION_SECONDS, (name[:20], elapsed)


def test_name_cut_before_matching() -> None:
    index = ListIndex([ListEntry(BLOCK, NAME, "spam$")])
    assert index.decide(caller("x" * 59 + "spam"), "menu").verdict is Verdict.BLOCK
    assert index.decide(caller("x" * 61 + "spam"), "menu").verdict is Verdict.SCREEN


def test_cli_add_rejects_nested_repeat(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "screener.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "calls.sqlite"}"\n')

    status = main(["-c", str(config), "block", "add", "--name-regex", "(a+)+$"])

    assert status == 2
    assert "'(a+)+$'" in capsys.readouterr().err
    assert list_store.list_entries(store) == []


def test_cli_removes_stored_unsafe_pattern(tmp_path: Path, store: Store) -> None:
    list_store.add_entry(store, ListEntry(BLOCK, NAME, "(a+)+$"))
    config = tmp_path / "screener.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "calls.sqlite"}"\n')

    status = main(["-c", str(config), "block", "remove", "--name-regex", "(a+)+$"])

    assert status == 0
    assert list_store.list_entries(store) == []


def test_csv_import_rejects_nested_repeat() -> None:
    text = "value,kind\nacme,name\n(a+)+$,name\n"
    result = read_csv(text, BLOCK, "1")
    assert [entry.value for entry in result.entries] == ["acme"]
    assert len(result.errors) == 1
    assert result.errors[0].line == 3
    assert "'(a+)+$'" in result.errors[0].message


def test_stored_unsafe_pattern_skipped(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # add_entry does not check values, like a row written by an older version.
    list_store.add_entry(store, ListEntry(BLOCK, NAME, "(a+)+$"))
    list_store.add_entry(store, ListEntry(BLOCK, NAME, "^acme"))
    caplog.set_level(logging.WARNING)

    lists = list_store.LiveLists(store)
    index = lists.index

    assert index.size == 1
    assert lists.decide(caller("ACME"), "menu").verdict is Verdict.BLOCK
    assert lists.decide(caller("a" * 40 + "!"), "menu").verdict is Verdict.SCREEN
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "/(a+)+$/" in warnings[0].getMessage()
    assert re.search(
        r"skipped block list entry .* \(id \d+\)", warnings[0].getMessage()
    )


def test_one_call_lists_skip_unsafe_pattern(store: Store) -> None:
    list_store.add_entry(store, ListEntry(BLOCK, NAME, "(a|a)*$"))
    connection = lookup.open_lookup(store.path)
    assert connection is not None
    lists = lookup.OneCallLists(connection)
    assert lists.decide(caller("a" * 40 + "!"), "menu").verdict is Verdict.SCREEN
    connection.close()
