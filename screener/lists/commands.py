"""The ``screener allow`` and ``screener block`` commands.

    screener allow|block add NUMBER | PREFIX* | --name-regex RE
                             [--note TEXT] [--expires YYYY-MM-DD]
    screener allow|block remove NUMBER | PREFIX* | --name-regex RE
    screener allow|block list
    screener allow|block import FILE [--format csv|vcard] [--skip-invalid]
    screener allow|block export [FILE]

Only the parser is built at start-up; each handler imports the database
layer when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screener import config as config_module
from screener.errors import ListError
from screener.lists.rules import (
    EntryKind,
    ListEntry,
    ListName,
    compile_pattern,
    parse_expiry,
    parse_value,
)

if TYPE_CHECKING:
    from screener.storage import Store

VCARD_SUFFIXES = (".vcf", ".vcard")


def add_list_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``allow`` and ``block`` with their actions to the CLI."""
    for list_name in ListName:
        _add_list_command(commands, list_name)


def _add_list_command(
    commands: argparse._SubParsersAction[Any], list_name: ListName
) -> None:
    audience = {
        ListName.ALLOW: "callers who ring the handsets without the menu",
        ListName.BLOCK: "callers who hear 'not in service' without the menu",
    }[list_name]
    parser = commands.add_parser(list_name.value, help=f"manage the {audience}")
    parser.set_defaults(list_name=list_name)
    actions = parser.add_subparsers(required=True, metavar="ACTION")

    add = actions.add_parser("add", help=f"add or update an entry: {audience}")
    _add_value_arguments(add)
    add.add_argument("--note", default="", help="free text shown by list")
    add.add_argument(
        "--expires",
        metavar="YYYY-MM-DD",
        default="",
        help="last day the entry matches (default: never expires)",
    )
    add.set_defaults(handler=_add)

    remove = actions.add_parser("remove", help="remove an entry")
    _add_value_arguments(remove)
    remove.set_defaults(handler=_remove)

    show = actions.add_parser("list", help="list the entries")
    show.set_defaults(handler=_list)

    load = actions.add_parser(
        "import", help="add entries from a CSV or vCard file, all or none"
    )
    load.add_argument("file", type=Path, help="CSV file, or vCard (.vcf) contacts")
    load.add_argument(
        "--format",
        choices=("csv", "vcard"),
        help="file format (default: vcard for .vcf and .vcard, else csv)",
    )
    load.add_argument(
        "--skip-invalid",
        action="store_true",
        help="import the valid entries and report the invalid lines",
    )
    load.set_defaults(handler=_import)

    save = actions.add_parser("export", help="write the entries as CSV")
    save.add_argument(
        "file", type=Path, nargs="?", help="output file (default: standard output)"
    )
    save.set_defaults(handler=_export)


def _add_value_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "value",
        nargs="?",
        metavar="NUMBER|PREFIX*",
        help="a number in any written form, or a prefix ending in *, such as +1555*",
    )
    group.add_argument(
        "--name-regex",
        metavar="RE",
        help="regular expression searched for in the caller ID name, ignoring case",
    )


def _entry_from_arguments(
    arguments: argparse.Namespace, country_code: str, *, check_pattern: bool = True
) -> ListEntry:
    list_name: ListName = arguments.list_name
    if arguments.name_regex is not None:
        # Removing skips the check, so that a pattern stored before it was
        # rejected can still be removed.
        if check_pattern:
            compile_pattern(arguments.name_regex)
        kind, value = EntryKind.NAME, arguments.name_regex
    else:
        kind, value = parse_value(arguments.value, country_code)
    return ListEntry(
        list_name,
        kind,
        value,
        note=getattr(arguments, "note", ""),
        expires=parse_expiry(getattr(arguments, "expires", "")),
        source="cli",
    )


@contextmanager
def _open(
    arguments: argparse.Namespace,
) -> Iterator[tuple[config_module.Config, Store]]:
    from screener.storage import open_store

    config = config_module.load_selected(arguments.config)
    store = open_store(config.database.path)
    try:
        yield config, store
    finally:
        store.close()


def _add(arguments: argparse.Namespace) -> int:
    from screener.lists.store import add_entry

    with _open(arguments) as (config, store):
        entry = _entry_from_arguments(arguments, config.callerid.country_code)
        added = add_entry(store, entry)
    print(f"{'added' if added else 'updated'}: {_describe(entry)}")
    return 0


def _remove(arguments: argparse.Namespace) -> int:
    from screener.lists.store import remove_entry

    with _open(arguments) as (config, store):
        entry = _entry_from_arguments(
            arguments, config.callerid.country_code, check_pattern=False
        )
        removed = remove_entry(store, entry.list, entry.kind, entry.value)
    if not removed:
        print(f"not on the {entry.list} list: {entry.display()}", file=sys.stderr)
        return 1
    print(f"removed from the {entry.list} list: {entry.display()}")
    return 0


def _list(arguments: argparse.Namespace) -> int:
    from screener.lists.store import list_entries

    with _open(arguments) as (_config, store):
        entries = list_entries(store, arguments.list_name)
    if not entries:
        print(f"the {arguments.list_name} list is empty")
        return 0
    today = date.today()
    for entry in entries:
        print(_describe(entry, today))
    return 0


def _import(arguments: argparse.Namespace) -> int:
    from screener.lists.files import read_csv, read_vcard
    from screener.lists.store import add_entries

    path: Path = arguments.file
    file_format = arguments.format or (
        "vcard" if path.suffix.lower() in VCARD_SUFFIXES else "csv"
    )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ListError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ListError(f"{str(path)!r} is not UTF-8 text: {exc}") from exc
    with _open(arguments) as (config, store):
        country_code = config.callerid.country_code
        if file_format == "vcard":
            result = read_vcard(text, country_code)
            entries = [
                ListEntry(
                    arguments.list_name, e.kind, e.value, e.note, e.expires, e.source
                )
                for e in result.entries
            ]
        else:
            result = read_csv(text, arguments.list_name, country_code)
            entries = result.entries
        if not arguments.skip_invalid:
            result.raise_errors(str(path))
        for error in result.errors:
            print(f"{path}: skipped {error}", file=sys.stderr)
        added, updated = add_entries(store, entries)
    print(
        f"imported {len(entries)} entries into the {arguments.list_name} list:"
        f" {added} added, {updated} updated"
    )
    return 0


def _export(arguments: argparse.Namespace) -> int:
    from screener.lists.files import write_csv
    from screener.lists.store import list_entries

    with _open(arguments) as (_config, store):
        text = write_csv(list_entries(store, arguments.list_name))
    if arguments.file is None:
        sys.stdout.write(text)
    else:
        arguments.file.write_text(text, encoding="utf-8")
    return 0


def _describe(entry: ListEntry, today: date | None = None) -> str:
    parts = [f"{entry.list} {entry.kind} {entry.display()}"]
    if entry.expires is not None:
        expired = today is not None and not entry.is_active(today)
        parts.append(f"{'expired' if expired else 'expires'} {entry.expires}")
    if entry.note:
        parts.append(f"({entry.note})")
    parts.append(f"[{entry.source}]")
    return "  ".join(parts)
