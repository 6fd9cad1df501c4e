"""Allow and block lists: entry forms, precedence, expiry, files and learning."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from screener import storage as storage_module
from screener.callerid import CallerId, parse
from screener.config import Lists as ListSettings
from screener.config import parse as parse_config
from screener.errors import ListError
from screener.flow import Outcome, Stage
from screener.lists import lookup
from screener.lists import store as list_store
from screener.lists.files import read_csv, read_vcard, write_csv
from screener.lists.rules import (
    EntryKind,
    ListEntry,
    ListIndex,
    ListName,
    Verdict,
    compile_pattern,
    parse_prefix,
    parse_value,
)
from screener.records import CallRecord
from screener.storage import Store, open_store

TODAY = date(2025, 6, 1)
ALLOW, BLOCK = ListName.ALLOW, ListName.BLOCK
NUMBER, PREFIX, NAME = EntryKind.NUMBER, EntryKind.PREFIX, EntryKind.NAME


def caller(number: str, name: str = "") -> CallerId:
    return parse(number, name)


def decide(entries: list[ListEntry], who: CallerId, withheld: str = "menu") -> Verdict:
    return ListIndex(entries).decide(who, withheld, TODAY).verdict


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "calls.sqlite")


# Precedence and matching


def test_allow_wins_over_block_same_number() -> None:
    entries = [
        ListEntry(BLOCK, NUMBER, "+15550100123"),
        ListEntry(ALLOW, NUMBER, "+15550100123"),
    ]
    assert decide(entries, caller("5550100123")) is Verdict.ALLOW


def test_allow_prefix_wins_over_block_number() -> None:
    entries = [
        ListEntry(BLOCK, NUMBER, "+15550100123"),
        ListEntry(ALLOW, PREFIX, "+1555"),
    ]
    assert decide(entries, caller("5550100123")) is Verdict.ALLOW


def test_allow_name_wins_over_block_prefix() -> None:
    entries = [ListEntry(BLOCK, PREFIX, "+1555"), ListEntry(ALLOW, NAME, "^kim\\b")]
    assert decide(entries, caller("5550100123", "KIM LEE")) is Verdict.ALLOW


@pytest.mark.parametrize(
    ("prefix", "number", "verdict"),
    [
        ("+1555", "5550100123", Verdict.BLOCK),
        ("+1555010", "5550100123", Verdict.BLOCK),
        ("+1555010", "5550110123", Verdict.SCREEN),
        ("+1556", "5550100123", Verdict.SCREEN),
        ("+44", "+442079460018", Verdict.BLOCK),
    ],
)
def test_prefix_matching(prefix: str, number: str, verdict: Verdict) -> None:
    entries = [ListEntry(BLOCK, PREFIX, prefix)]
    assert decide(entries, caller(number)) is verdict


def test_longest_prefix_is_reported() -> None:
    index = ListIndex(
        [ListEntry(BLOCK, PREFIX, "+1"), ListEntry(BLOCK, PREFIX, "+1555")]
    )
    entry = index.match(BLOCK, caller("5550100123"), TODAY)
    assert entry is not None
    assert entry.value == "+1555"


@pytest.mark.parametrize(
    ("pattern", "name", "verdict"),
    [
        ("acme", "ACME SALES", Verdict.BLOCK),
        ("^sales", "ACME SALES", Verdict.SCREEN),
        ("sales$", "ACME SALES", Verdict.BLOCK),
        ("^(toll free|800 service)$", "TOLL FREE", Verdict.BLOCK),
        ("acme", "", Verdict.SCREEN),
    ],
)
def test_name_pattern_matching(pattern: str, name: str, verdict: Verdict) -> None:
    entries = [ListEntry(BLOCK, NAME, pattern)]
    assert decide(entries, caller("5550100123", name)) is verdict


def test_name_pattern_matches_withheld_number() -> None:
    entries = [ListEntry(BLOCK, NAME, "acme")]
    assert decide(entries, caller("P", "ACME")) is Verdict.BLOCK


def test_expired_entry_does_not_match() -> None:
    entries = [ListEntry(BLOCK, NUMBER, "+15550100123", expires=date(2025, 5, 31))]
    assert decide(entries, caller("5550100123")) is Verdict.SCREEN


def test_entry_matches_on_expiry_day() -> None:
    entries = [ListEntry(BLOCK, NUMBER, "+15550100123", expires=TODAY)]
    assert decide(entries, caller("5550100123")) is Verdict.BLOCK


def test_expired_exact_entry_falls_back_to_prefix() -> None:
    entries = [
        ListEntry(ALLOW, NUMBER, "+15550100123", expires=date(2024, 1, 1)),
        ListEntry(BLOCK, PREFIX, "+1555"),
    ]
    assert decide(entries, caller("5550100123")) is Verdict.BLOCK


def test_expired_allow_lets_block_win() -> None:
    entries = [
        ListEntry(ALLOW, PREFIX, "+1555", expires=date(2024, 1, 1)),
        ListEntry(BLOCK, NUMBER, "+15550100123"),
    ]
    assert decide(entries, caller("5550100123")) is Verdict.BLOCK


@pytest.mark.parametrize("number", ["P", "Anonymous", "", "unknown", "O", "555-CALL"])
def test_withheld_policy_block(number: str) -> None:
    assert decide([], caller(number), withheld="block") is Verdict.BLOCK_WITHHELD


@pytest.mark.parametrize("number", ["P", "", "O"])
def test_withheld_policy_menu(number: str) -> None:
    assert decide([], caller(number), withheld="menu") is Verdict.SCREEN


def test_withheld_caller_allowed_by_name() -> None:
    entries = [ListEntry(ALLOW, NAME, "^kim")]
    assert decide(entries, caller("P", "Kim"), withheld="block") is Verdict.ALLOW


def test_present_number_ignores_withheld_policy() -> None:
    assert decide([], caller("5550100123"), withheld="block") is Verdict.SCREEN


# Entry forms


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("(555) 010-0123", NUMBER, "+15550100123"),
        ("1-555-010-0123", NUMBER, "+15550100123"),
        ("+1555*", PREFIX, "+1555"),
        ("555*", PREFIX, "+1555"),
        ("1555*", PREFIX, "+1555"),
        ("555-010*", PREFIX, "+1555010"),
        ("+44 20*", PREFIX, "+4420"),
    ],
)
def test_entry_forms(text: str, kind: EntryKind, value: str) -> None:
    assert parse_value(text, "1") == (kind, value)


def test_prefix_with_trunk_zero_elsewhere() -> None:
    assert parse_prefix("020*", "44") == "+4420"


@pytest.mark.parametrize("text", ["12345", "555-CALL", "", "P"])
def test_invalid_number_rejected(text: str) -> None:
    with pytest.raises(ListError, match="invalid phone number"):
        parse_value(text, "1")


def test_ambiguous_prefix_rejected() -> None:
    with pytest.raises(ListError, match="ambiguous"):
        parse_prefix("20*", "44")


@pytest.mark.parametrize("pattern", ["(", "[a-", "*x", "a{2,1}"])
def test_invalid_regex_rejected(pattern: str) -> None:
    with pytest.raises(ListError, match="invalid regular expression"):
        compile_pattern(pattern)


def test_invalid_regex_not_stored(store: Store, tmp_path: Path) -> None:
    from screener.cli import main

    config = tmp_path / "screener.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "calls.sqlite"}"\n')
    status = main(["-c", str(config), "block", "add", "--name-regex", "(acme"])
    assert status == 2
    assert list_store.list_entries(store) == []


# Storage


def test_add_then_update_entry(store: Store) -> None:
    entry = ListEntry(BLOCK, NUMBER, "+15550100123", note="first")
    assert list_store.add_entry(store, entry) is True
    updated = ListEntry(BLOCK, NUMBER, "+15550100123", note="second")
    assert list_store.add_entry(store, updated) is False
    notes = [e.note for e in list_store.list_entries(store)]
    assert notes == ["second"]


def test_change_counter_moves_on_change(store: Store) -> None:
    before = list_store.change_counter(store)
    list_store.add_entry(store, ListEntry(BLOCK, NUMBER, "+15550100123"))
    after_add = list_store.change_counter(store)
    list_store.remove_entry(store, BLOCK, NUMBER, "+15550100123")
    assert after_add > before
    assert list_store.change_counter(store) > after_add


def test_live_lists_see_changes_from_other_connection(
    store: Store, tmp_path: Path
) -> None:
    live = list_store.LiveLists(store)
    who = caller("5550100123")
    assert live.decide(who, "menu").verdict is Verdict.SCREEN
    other = open_store(tmp_path / "calls.sqlite")
    list_store.add_entry(other, ListEntry(BLOCK, NUMBER, "+15550100123"))
    assert live.decide(who, "menu").verdict is Verdict.BLOCK


def test_one_call_lists_match_like_index(store: Store) -> None:
    list_store.add_entries(
        store,
        [
            ListEntry(BLOCK, PREFIX, "+1555"),
            ListEntry(ALLOW, NUMBER, "+15550100123"),
            ListEntry(BLOCK, NAME, "acme"),
        ],
    )
    connection = lookup.open_lookup(store.path)
    assert connection is not None
    lists = lookup.OneCallLists(connection)
    assert lists.decide(caller("5550100123"), "menu").verdict is Verdict.ALLOW
    assert lists.decide(caller("5550100999"), "menu").verdict is Verdict.BLOCK
    assert lists.decide(caller("P", "ACME"), "menu").verdict is Verdict.BLOCK
    assert lists.decide(caller("6660100999"), "menu").verdict is Verdict.SCREEN
    connection.close()


def test_invalid_row_skipped_others_apply(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    list_store.add_entries(
        store,
        [
            ListEntry(BLOCK, PREFIX, "+1555"),
            ListEntry(ALLOW, NUMBER, "+15550100123"),
        ],
    )
    # As a hand edit with the sqlite3 shell might leave it.
    with sqlite3.connect(store.path) as editor:
        editor.execute("UPDATE list_entries SET expires = 'soon' WHERE kind = 'prefix'")
    editor.close()

    connection = lookup.open_lookup(store.path)
    assert connection is not None
    lists = lookup.OneCallLists(connection)
    assert lists.decide(caller("5550100123"), "menu").verdict is Verdict.ALLOW
    assert lists.decide(caller("5550100999"), "menu").verdict is Verdict.SCREEN
    connection.close()
    assert [entry.value for entry in list_store.list_entries(store)] == ["+15550100123"]
    assert "list entry 1 skipped" in caplog.text
    assert "'soon'" in caplog.text


def test_lookup_of_missing_database(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"

    assert lookup.open_lookup(path) is None
    # Opening it would have left an empty file without the schema.
    assert not path.exists()


def test_lookup_of_database_before_lists(tmp_path: Path) -> None:
    # An empty file, and a call log from before the lists existed.
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    older = tmp_path / "older.sqlite"
    connection = sqlite3.connect(older)
    connection.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY)")
    connection.execute(f"PRAGMA user_version = {lookup.LISTS_SCHEMA_VERSION - 1}")
    connection.close()

    assert lookup.open_lookup(empty) is None
    assert lookup.open_lookup(older) is None


def test_lookup_schema_version_creates_lists(store: Store) -> None:
    migration = storage_module._MIGRATIONS[lookup.LISTS_SCHEMA_VERSION - 1]
    assert "CREATE TABLE list_entries" in migration
    earlier = storage_module._MIGRATIONS[: lookup.LISTS_SCHEMA_VERSION - 1]
    assert not any("list_entries" in script for script in earlier)


def test_lookup_of_non_database_raises(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    path.write_text("not a database, but a text file of some length\n" * 100)

    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        lookup.open_lookup(path)


# Files

VCARD = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "FN:Kim\\, Lee\r\n"
    "TEL;TYPE=cell:(555) 010-0101\r\n"
    "item1.TEL;type=pref:+1 555 010\r\n"
    " 0102\r\n"
    "item1.X-ABLabel:_$!<Other>!$_\r\n"
    "END:VCARD\r\n"
    "BEGIN:VCARD\n"
    "VERSION:4.0\n"
    "FN:Pat\n"
    'TEL;VALUE=uri;TYPE="voice,home":tel:+1-555-010-0103;ext=12\n'
    "TEL:tel:5550100104\n"
    "END:VCARD\n"
    "BEGIN:VCARD\n"
    "VERSION:2.1\n"
    "N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=\n"
    "=C3=BCrgen;;;\n"
    "TEL;CELL;VOICE:555.010.0105 x7\n"
    "TEL;WORK:+44 20 7946 0018\n"
    "END:VCARD\n"
)


def test_vcard_numbers_in_odd_forms() -> None:
    result = read_vcard(VCARD, "1")
    assert result.errors == []
    assert [entry.value for entry in result.entries] == [
        "+15550100101",
        "+15550100102",
        "+15550100103",
        "+15550100104",
        "+15550100105",
        "+442079460018",
    ]


def test_vcard_contact_names_become_notes() -> None:
    notes = [entry.note for entry in read_vcard(VCARD, "1").entries]
    assert notes[0] == "Kim, Lee"
    assert notes[2] == "Pat"
    assert notes[4] == "Jürgen Müller"


def test_vcard_entries_are_allow_numbers() -> None:
    entries = read_vcard(VCARD, "1").entries
    assert {entry.list for entry in entries} == {ALLOW}
    assert {entry.kind for entry in entries} == {NUMBER}


def test_vcard_bad_number_names_line() -> None:
    text = "BEGIN:VCARD\nFN:Carrier\nTEL:611\nEND:VCARD\n"
    result = read_vcard(text, "1")
    assert [error.line for error in result.errors] == [3]


def test_vcard_unclosed_card_reported() -> None:
    result = read_vcard("BEGIN:VCARD\nFN:X\nTEL:5550100101\n", "1")
    assert [error.line for error in result.errors] == [1]


CSV_TEXT = (
    "value,kind,note,expires\n"
    "5550100101,,Kim,\n"
    "+1555*,,area code,2030-12-31\n"
    "^ACME,name,,\n"
)


def test_csv_reads_every_kind() -> None:
    result = read_csv(CSV_TEXT, BLOCK, "1")
    assert result.errors == []
    assert [(e.kind, e.value) for e in result.entries] == [
        (NUMBER, "+15550100101"),
        (PREFIX, "+1555"),
        (NAME, "^ACME"),
    ]
    assert result.entries[1].expires == date(2030, 12, 31)


def test_csv_export_reads_back() -> None:
    entries = read_csv(CSV_TEXT, BLOCK, "1").entries
    again = read_csv(write_csv(entries), BLOCK, "1").entries
    assert again == entries


def test_csv_bad_line_imports_nothing(store: Store) -> None:
    text = CSV_TEXT + "not a number,,,\n" + "5550100109,,,\n"
    result = read_csv(text, BLOCK, "1")
    with pytest.raises(ListError, match="line 5: invalid phone number") as raised:
        result.raise_errors("list.csv")
    assert "nothing imported" in str(raised.value)
    assert list_store.list_entries(store) == []


def test_csv_import_command_is_all_or_nothing(store: Store, tmp_path: Path) -> None:
    from screener.cli import main

    config = tmp_path / "screener.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "calls.sqlite"}"\n')
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV_TEXT + "5550100110,,,1 May\n")
    good = tmp_path / "good.csv"
    good.write_text(CSV_TEXT)
    assert main(["-c", str(config), "block", "import", str(bad)]) == 2
    assert list_store.list_entries(store) == []
    assert main(["-c", str(config), "block", "import", str(good)]) == 0
    assert len(list_store.list_entries(store, BLOCK)) == 3


def test_csv_invalid_regex_names_line() -> None:
    result = read_csv("value,kind\n(acme,name\n", BLOCK, "1")
    assert [error.line for error in result.errors] == [2]
    assert "invalid regular expression" in result.errors[0].message


def test_csv_unknown_column_rejected() -> None:
    result = read_csv("number,comment\n5550100101,x\n", BLOCK, "1")
    assert [error.line for error in result.errors] == [1]


def test_csv_quoted_newline_keeps_line_numbers() -> None:
    text = 'value,note\n5550100101,"two\nlines"\nbad,\n'
    result = read_csv(text, BLOCK, "1")
    assert [error.line for error in result.errors] == [4]


# Learning and the last caller


def logged_call(number: str, outcome: Outcome, uniqueid: str = "1.1") -> CallRecord:
    who = caller(number)
    return CallRecord(
        started_at=datetime(2025, 6, 1, 12, 0, tzinfo=UTC),
        uniqueid=uniqueid,
        channel="DAHDI/1-1",
        number_raw=number,
        name_raw="",
        number=who.number,
        name=None,
        presence=who.presence.value,
        keys="",
        stage=Stage.GOODBYE,
        outcome=outcome,
        duration=10.0,
    )


@pytest.mark.parametrize(
    ("outcome", "settings", "list_name"),
    [
        (Outcome.TRAPPED_DECOY, ListSettings(), BLOCK),
        (Outcome.TRAPPED_SILENT, ListSettings(block_after_silence=True), BLOCK),
        (Outcome.PASSED_OWNER, ListSettings(allow_after_owner_key=True), ALLOW),
    ],
)
def test_learning_adds_number(
    store: Store, outcome: Outcome, settings: ListSettings, list_name: ListName
) -> None:
    entry = list_store.learn(store, logged_call("5550100123", outcome), settings)
    assert entry is not None
    assert entry.list is list_name
    assert [e.value for e in list_store.list_entries(store, list_name)] == [
        "+15550100123"
    ]


@pytest.mark.parametrize(
    "outcome", [Outcome.TRAPPED_SILENT, Outcome.PASSED_OWNER, Outcome.TRAPPED_HANGUP]
)
def test_learning_off_by_default(store: Store, outcome: Outcome) -> None:
    call = logged_call("5550100123", outcome)
    assert list_store.learn(store, call, ListSettings()) is None
    assert list_store.list_entries(store) == []


def test_learning_skips_withheld(store: Store) -> None:
    call = logged_call("P", Outcome.TRAPPED_DECOY)
    assert list_store.learn(store, call, ListSettings()) is None


def test_learning_keeps_owner_note(store: Store) -> None:
    mine = ListEntry(BLOCK, NUMBER, "+15550100123", note="mine")
    list_store.add_entry(store, mine)
    call = logged_call("5550100123", Outcome.TRAPPED_DECOY)
    list_store.learn(store, call, ListSettings())
    assert [e.note for e in list_store.list_entries(store)] == ["mine"]


def test_last_caller_skips_withheld(store: Store) -> None:
    store.record_call(
        logged_call("5550100123", Outcome.TRAPPED_DECOY, "1"), report=False
    )
    store.record_call(logged_call("P", Outcome.TRAPPED_SILENT, "2"), report=False)
    last = list_store.last_caller(store)
    assert last is not None
    assert last.number == "+15550100123"


async def test_large_lists_rebuild_off_the_loop(store: Store) -> None:
    count = list_store.BACKGROUND_REBUILD_ENTRIES + 100
    list_store.add_entries(
        store,
        [ListEntry(BLOCK, NUMBER, f"+1555{index:07d}") for index in range(count)],
    )
    live = list_store.LiveLists(store)
    live.refresh()
    who = caller("8005550199")
    list_store.add_entry(store, ListEntry(BLOCK, NUMBER, "+18005550199"))

    # The previous index answers while the new one is built in a thread.
    assert live.decide(who, "menu").verdict is Verdict.SCREEN
    async with asyncio.timeout(30):
        while live.decide(who, "menu").verdict is not Verdict.BLOCK:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(("enabled", "queued"), [(False, 0), (True, 1)])
def test_trap_report_queued_only_with_mail_on(
    store: Store, tmp_path: Path, enabled: bool, queued: int
) -> None:
    mail = {"enabled": enabled, "to": "a@example.org", "from": "b@example.org"}
    config = parse_config({"mail": mail}, base_dir=tmp_path)
    call = logged_call("5550100123", Outcome.TRAPPED_DECOY)
    list_store.record_and_learn(store, call, config)
    assert store.query("SELECT count(*) FROM outbox")[0][0] == queued
