"""Reading and writing list files: CSV in both directions, vCard for import.

A file is read completely before anything is stored, and every bad line is
reported with its line number, so an import either adds all of its entries
in one transaction or none of them.

CSV files have a header row. Column names are matched ignoring case and
surrounding spaces:

    value    required: a number, a prefix ending in ``*``, or a name pattern
    kind     optional: number, prefix or name; without it, a value ending in
             ``*`` is a prefix and anything else a number
    note     optional: free text
    expires  optional: YYYY-MM-DD, the last day the entry matches

vCard files (versions 2.1, 3.0 and 4.0) give one allow entry per telephone
number of each contact, with the contact's name as the note.
"""

from __future__ import annotations

import csv
import io
import quopri
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from screener.errors import ListError
from screener.lists.rules import (
    EntryKind,
    ListEntry,
    ListName,
    check_value,
    parse_expiry,
    parse_value,
)

CSV_COLUMNS = ("value", "kind", "note", "expires")
# Errors listed in one message; past this the count of the rest is given.
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class LineError:
    """One bad line of an import file."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ReadResult:
    """The entries read from a file and the lines that could not be read."""

    entries: list[ListEntry]
    errors: list[LineError]

    def raise_errors(self, source: str) -> None:
        """Raise one ListError naming every bad line, if there is any."""
        if not self.errors:
            return
        shown = [str(error) for error in self.errors[:MAX_REPORTED_ERRORS]]
        hidden = len(self.errors) - len(shown)
        if hidden:
            shown.append(f"... and {hidden} more")
        raise ListError(
            f"{source}: {len(self.errors)} invalid line(s), nothing imported:\n  "
            + "\n  ".join(shown)
        )


def read_csv(
    text: str, list_name: ListName, country_code: str, source: str = "import"
) -> ReadResult:
    """Read list entries from CSV text with a header row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return ReadResult([], [])
    except csv.Error as exc:
        return ReadResult([], [LineError(reader.line_num, f"invalid CSV: {exc}")])
    columns = [name.strip().lower().lstrip("\ufeff") for name in header]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if unknown or "value" not in columns:
        known = ", ".join(CSV_COLUMNS)
        problem = f"unknown column(s) {unknown}" if unknown else "no value column"
        return ReadResult([], [LineError(1, f"{problem}; the columns are {known}")])

    entries: list[ListEntry] = []
    errors: list[LineError] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(LineError(reader.line_num, f"invalid CSV: {exc}"))
            break
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        if len(row) > len(columns):
            errors.append(
                LineError(line, f"{len(row)} fields, the header has {len(columns)}")
            )
            continue
        fields = dict(zip(columns, row, strict=False))
        try:
            entries.append(_csv_entry(fields, list_name, country_code, source))
        except ListError as exc:
            errors.append(LineError(line, str(exc)))
    return ReadResult(entries, errors)


def _csv_entry(
    fields: dict[str, str], list_name: ListName, country_code: str, source: str
) -> ListEntry:
    value = fields.get("value", "").strip()
    kind_text = fields.get("kind", "").strip().lower()
    if not value:
        raise ListError("empty value")
    if kind_text:
        try:
            kind = EntryKind(kind_text)
        except ValueError:
            valid = ", ".join(kind.value for kind in EntryKind)
            raise ListError(f"unknown kind {kind_text!r}; valid: {valid}") from None
        value = check_value(kind, value, country_code)
    else:
        kind, value = parse_value(value, country_code)
    return ListEntry(
        list_name,
        kind,
        value,
        note=fields.get("note", "").strip(),
        expires=parse_expiry(fields.get("expires", "")),
        source=source,
    )


def write_csv(entries: Iterable[ListEntry]) -> str:
    """Return the entries as CSV that read_csv reads back unchanged."""
    output = io.StringIO(newline="")
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        expires = entry.expires.isoformat() if entry.expires else ""
        writer.writerow((entry.value, entry.kind.value, entry.note, expires))
    return output.getvalue()


# A content line: optional group ("item1."), property name, parameters, value.
_CONTENT_LINE = re.compile(
    r"^(?:(?P<group>[A-Za-z0-9-]+)\.)?(?P<name>[A-Za-z0-9-]+)"
    r"(?P<params>(?:;[^:]*)?):(?P<value>.*)$"
)
# An extension written after the number: "x123", "ext. 123", ";ext=123".
_EXTENSION = re.compile(r"(?:;ext=.*|\s*(?:x|ext\.?)\s*\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class _ContentLine:
    number: int
    name: str
    params: tuple[str, ...]
    value: str


def read_vcard(text: str, country_code: str) -> ReadResult:
    """Read allow entries from vCard text: one per TEL line of each contact.

    Handles folded lines, vCard 2.1 quoted-printable values with soft line
    breaks, ``TEL;TYPE=cell:``, ``TEL;CELL:``, ``TEL;VALUE=uri:tel:+1-555-...``
    and grouped properties such as ``item1.TEL``.
    """
    entries: list[ListEntry] = []
    errors: list[LineError] = []
    card: list[_ContentLine] | None = None
    card_start = 0
    for line in _content_lines(text, errors):
        name = line.name.upper()
        if name == "BEGIN" and line.value.strip().upper() == "VCARD":
            if card is not None:
                errors.append(LineError(line.number, "BEGIN:VCARD inside a card"))
            card, card_start = [], line.number
        elif name == "END" and line.value.strip().upper() == "VCARD":
            if card is None:
                errors.append(LineError(line.number, "END:VCARD without BEGIN"))
            else:
                _card_entries(card, country_code, entries, errors)
            card = None
        elif card is not None:
            card.append(line)
        elif name == "TEL":
            errors.append(LineError(line.number, "TEL outside BEGIN:VCARD"))
    if card is not None:
        errors.append(LineError(card_start, "card not closed by END:VCARD"))
    return ReadResult(entries, errors)


def _content_lines(text: str, errors: list[LineError]) -> Iterator[_ContentLine]:
    """Unfold physical lines into content lines, keeping first line numbers."""
    physical = text.splitlines()
    index = 0
    while index < len(physical):
        number = index + 1
        logical = physical[index]
        index += 1
        # RFC 6350 and RFC 2425 folding: a line starting with a space or tab
        # continues the previous one.
        while index < len(physical) and physical[index][:1] in (" ", "\t"):
            logical += physical[index][1:]
            index += 1
        if not logical.strip():
            continue
        match = _CONTENT_LINE.match(logical)
        if match is None:
            errors.append(LineError(number, f"not a vCard property: {logical!r}"))
            continue
        params = tuple(p for p in match["params"].split(";") if p)
        value = match["value"]
        if _is_quoted_printable(params):
            # vCard 2.1 soft line breaks: "=" at the end joins the next line.
            while value.endswith("=") and index < len(physical):
                value = value[:-1] + physical[index]
                index += 1
            value = _decode_quoted_printable(value, params)
        yield _ContentLine(number, match["name"], params, value)


def _is_quoted_printable(params: Sequence[str]) -> bool:
    return any(
        p.upper() in ("ENCODING=QUOTED-PRINTABLE", "QUOTED-PRINTABLE") for p in params
    )


def _decode_quoted_printable(value: str, params: Sequence[str]) -> str:
    charset = "utf-8"
    for param in params:
        key, _, setting = param.partition("=")
        if key.upper() == "CHARSET" and setting:
            charset = setting
    raw = quopri.decodestring(value.encode("ascii", "replace"))
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _card_entries(
    card: Sequence[_ContentLine],
    country_code: str,
    entries: list[ListEntry],
    errors: list[LineError],
) -> None:
    note = _contact_name(card)
    for line in card:
        if line.name.upper() != "TEL":
            continue
        number_text = _tel_number(line.value)
        if not number_text:
            continue
        try:
            value = check_value(EntryKind.NUMBER, number_text, country_code)
        except ListError as exc:
            errors.append(LineError(line.number, f"{note or 'contact'}: {exc}"))
            continue
        entries.append(
            ListEntry(
                ListName.ALLOW, EntryKind.NUMBER, value, note=note, source="import"
            )
        )


def _contact_name(card: Sequence[_ContentLine]) -> str:
    for line in card:
        if line.name.upper() == "FN" and line.value.strip():
            return _unescape(line.value).strip()
    for line in card:
        if line.name.upper() == "N":
            # N is "family;given;additional;prefixes;suffixes".
            parts = [_unescape(part).strip() for part in _split_unescaped(line.value)]
            return " ".join(part for part in (parts[1:2] + parts[:1]) if part)
    return ""


def _tel_number(value: str) -> str:
    number = value.strip()
    if number.lower().startswith("tel:"):
        number = number[4:]
    return _EXTENSION.sub("", number).strip()


def _split_unescaped(value: str) -> list[str]:
    return re.split(r"(?<!\\);", value)


def _unescape(value: str) -> str:
    replacements = {"\\n": " ", "\\N": " ", "\\,": ",", "\\;": ";", "\\\\": "\\"}
    return re.sub(r"\\[nN,;\\]", lambda match: replacements[match[0]], value)
