"""List entries, the rules that apply them, and the in-memory index.

Rules, applied in this order before the menu:

1. An allow entry matches: ring the handsets at once, without answering.
2. A block entry matches: answer, play the tones and "not in service", hang up.
3. The caller has no usable number (withheld, unavailable or invalid) and
   ``lists.withheld`` is "block": the blocked treatment.
4. Anyone else: the menu.

Allow always wins over block, whatever the kinds of the two entries. An entry
is an exact E.164 number, an E.164 prefix (an area code or an exchange, such
as ``+1555`` or ``+1555010``) or a regular expression searched for in the
caller's name. An entry with an expiry date matches up to and including that
day, in the server's local time.

The index answers in a few microseconds whatever the list size: one dict
lookup for the exact number, one per distinct prefix length, and one search
per name pattern. Name patterns are the only part that grows with the list.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from datetime import date

from screener.callerid import CallerId, Presence, normalise_number
from screener.errors import ListError
from screener.lazylog import get_logger
from screener.lists.patterns import MAX_NAME_LENGTH, check_backtracking
from screener.record import Record

# typing is not imported at run time, for classic AGI's start-up (see
# screener.record). mypy treats any name TYPE_CHECKING as true, and at run
# time a protocol class is a plain base class that nothing instantiates.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

# A lazy logger: classic AGI imports this module before its first command.
log = get_logger(__name__)

# Caller ID names are at most 15 characters on North American lines, so a
# longer pattern is almost certainly a mistake. The cap also bounds the cost
# of compiling and searching every pattern on each call.
MAX_PATTERN_LENGTH = 200
# An E.164 number has at most 15 digits after "+"; a prefix needs at least the
# country code.
MAX_PREFIX_DIGITS = 15
PREFIX_MARK = "*"
_FORMATTING = re.compile(r"[\s\-.()/]")


class ListName(enum.StrEnum):
    """The two lists."""

    ALLOW = "allow"
    BLOCK = "block"


class EntryKind(enum.StrEnum):
    """The part of a call an entry matches: a number, a prefix or the name."""

    NUMBER = "number"
    PREFIX = "prefix"
    NAME = "name"


class Verdict(enum.StrEnum):
    """The rules' verdict for a call."""

    SCREEN = "screen"
    ALLOW = "allow"
    BLOCK = "block"
    BLOCK_WITHHELD = "block-withheld"


class ListEntry(Record):
    """One allow or block list entry; ``value`` is E.164 or a name pattern."""

    list: ListName
    kind: EntryKind
    value: str
    note: str = ""
    expires: date | None = None
    # Where the entry came from: "cli", "import", "learned" or "handset".
    source: str = "cli"
    id: int | None = None

    def is_active(self, today: date) -> bool:
        """Tell whether the entry still matches on ``today``."""
        return self.expires is None or today <= self.expires

    def display(self) -> str:
        """Return the entry as the CLI accepts it: ``+1555*``, ``/ACME/``."""
        if self.kind is EntryKind.PREFIX:
            return self.value + PREFIX_MARK
        if self.kind is EntryKind.NAME:
            return f"/{self.value}/"
        return self.value


class Decision(Record):
    """The verdict for one call and the entry that caused it, if any."""

    verdict: Verdict
    entry: ListEntry | None = None


class CallerLists(Protocol):
    """Something that decides a call from the lists."""

    def decide(self, caller: CallerId, withheld: str) -> Decision:
        """Apply the rules to ``caller``; ``withheld`` is "menu" or "block"."""
        ...


def parse_number(text: str, country_code: str) -> str:
    """Return the E.164 form of a number entry, raising ListError if invalid."""
    presence, number = normalise_number(text, country_code=country_code)
    if presence is not Presence.PRESENT or number is None:
        raise ListError(
            f"invalid phone number {text!r}; write it as on a bill, such as"
            " +1 555 010 0123 or (555) 010-0123"
        )
    return number


def parse_prefix(text: str, country_code: str) -> str:
    """Return the E.164 prefix of a prefix entry such as ``+1555`` or ``555``.

    Without "+", a North American prefix is read as an area code (after an
    optional leading 1), and elsewhere a prefix must start with the trunk
    prefix 0 or the international prefix 00.
    """
    compact = _FORMATTING.sub("", text.strip()).removesuffix(PREFIX_MARK)
    digits = compact.removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        raise ListError(
            f"invalid number prefix {text!r}; use digits only, such as +1555*"
        )
    if compact.startswith("+"):
        international = digits
    elif country_code == "1":
        international = "1" + digits.removeprefix("1")
    elif digits.startswith("00"):
        international = digits[2:]
    elif digits.startswith("0"):
        international = country_code + digits[1:]
    else:
        raise ListError(
            f"ambiguous number prefix {text!r}; write it with + and the"
            f" country code, such as +{country_code}{digits}*"
        )
    if not 1 <= len(international) <= MAX_PREFIX_DIGITS or international[0] == "0":
        raise ListError(f"invalid number prefix {text!r}")
    return "+" + international


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a name pattern (searched, ignoring case), raising ListError.

    A pattern that could backtrack catastrophically is rejected too (see
    :mod:`screener.lists.patterns`).
    """
    if not pattern:
        raise ListError("empty name pattern; it would match every name")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ListError(
            f"name pattern longer than {MAX_PATTERN_LENGTH} characters: {pattern!r}"
        )
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ListError(
            f"invalid regular expression {pattern!r}: {exc.msg} at position {exc.pos}"
        ) from None
    check_backtracking(pattern)
    return compiled


def parse_value(text: str, country_code: str) -> tuple[EntryKind, str]:
    """Read a number entry, or a prefix entry ending in ``*``."""
    if text.strip().endswith(PREFIX_MARK):
        return EntryKind.PREFIX, parse_prefix(text, country_code)
    return EntryKind.NUMBER, parse_number(text, country_code)


def check_value(kind: EntryKind, value: str, country_code: str) -> str:
    """Return the stored form of ``value`` for ``kind``, raising ListError."""
    if kind is EntryKind.NUMBER:
        return parse_number(value, country_code)
    if kind is EntryKind.PREFIX:
        return parse_prefix(value, country_code)
    compile_pattern(value)
    return value


def parse_expiry(text: str) -> date | None:
    """Read an expiry date written as YYYY-MM-DD; empty means none."""
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ListError(
            f"invalid expiry date {text!r}; write it as YYYY-MM-DD"
        ) from None


class _ListTable:
    """The entries of one list, indexed by kind."""

    def __init__(self) -> None:
        self.numbers: dict[str, ListEntry] = {}
        self.prefixes: dict[str, ListEntry] = {}
        self.prefix_lengths: tuple[int, ...] = ()
        self.names: list[tuple[re.Pattern[str], ListEntry]] = []

    def add(self, entry: ListEntry) -> bool:
        """Add ``entry``; return False if its name pattern was rejected."""
        if entry.kind is EntryKind.NUMBER:
            self.numbers[entry.value] = entry
        elif entry.kind is EntryKind.PREFIX:
            self.prefixes[entry.value] = entry
        else:
            try:
                compiled = compile_pattern(entry.value)
            except ListError as exc:
                # Rows stored before a check existed, or written by other
                # tools: one bad row must not disable both lists.
                log.warning(
                    "skipped %s list entry %s (id %s): %s",
                    entry.list,
                    entry.display(),
                    entry.id,
                    exc,
                )
                return False
            self.names.append((compiled, entry))
        return True

    def finish(self) -> None:
        # Longest first, so the most specific prefix is the one reported.
        lengths = {len(prefix) for prefix in self.prefixes}
        self.prefix_lengths = tuple(sorted(lengths, reverse=True))

    def match(self, caller: CallerId, today: date) -> ListEntry | None:
        number = caller.number
        if number is not None:
            entry = self.numbers.get(number)
            if entry is not None and entry.is_active(today):
                return entry
            for length in self.prefix_lengths:
                if length > len(number):
                    continue
                entry = self.prefixes.get(number[:length])
                if entry is not None and entry.is_active(today):
                    return entry
        name = caller.name
        if name is not None:
            # Defence in depth for the backtracking check: the work of a
            # search grows with the name, which the caller chooses.
            name = name[:MAX_NAME_LENGTH]
            for pattern, entry in self.names:
                if entry.is_active(today) and pattern.search(name):
                    return entry
        return None


class ListIndex:
    """Both lists in memory, ready to decide calls."""

    def __init__(self, entries: Iterable[ListEntry] = ()) -> None:
        self._tables = {name: _ListTable() for name in ListName}
        self.size = 0
        for entry in entries:
            if self._tables[entry.list].add(entry):
                self.size += 1
        for table in self._tables.values():
            table.finish()

    def match(
        self, list_name: ListName, caller: CallerId, today: date | None = None
    ) -> ListEntry | None:
        """Return the active entry of ``list_name`` that matches ``caller``."""
        return self._tables[list_name].match(caller, today or date.today())

    def decide(
        self, caller: CallerId, withheld: str, today: date | None = None
    ) -> Decision:
        """Apply the rules to ``caller``; ``withheld`` is "menu" or "block"."""
        day = today or date.today()
        allowed = self._tables[ListName.ALLOW].match(caller, day)
        if allowed is not None:
            return Decision(Verdict.ALLOW, allowed)
        blocked = self._tables[ListName.BLOCK].match(caller, day)
        if blocked is not None:
            return Decision(Verdict.BLOCK, blocked)
        if caller.presence is not Presence.PRESENT and withheld == "block":
            return Decision(Verdict.BLOCK_WITHHELD)
        return Decision(Verdict.SCREEN)


EMPTY_INDEX = ListIndex()
