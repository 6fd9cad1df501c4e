"""Caller ID as received from the line, and its normalised form.

An analog line delivers caller ID in many shapes: a number with or without a
leading 1 or +1, with spaces, dashes, dots or parentheses; a withheld marker
("P", "Private", "Anonymous"); an out-of-area marker ("O", "Unavailable"); or
nothing at all. Asterisk reports a missing value as "unknown" in the AGI
environment. The raw value is always kept beside the normalised one.
"""

from __future__ import annotations

import enum
import re

from screener.record import Record

# Values that mean "the number was withheld by the caller".
WITHHELD = frozenset({"p", "private", "anonymous", "restricted", "withheld"})
# Values that mean "the network could not deliver a number".
UNAVAILABLE = frozenset({"o", "unavailable", "out of area", "unknown", ""})
# Some carriers send "V" and digits as the name field; it names no one.
_CARRIER_NAME = re.compile(r"^V\d+$", re.IGNORECASE)
_FORMATTING = re.compile(r"[\s\-.()/]")
# E.164 allows at most 15 digits; more means garbage on the line.
MAX_E164_DIGITS = 15
NANP_LENGTH = 10


class Presence(enum.StrEnum):
    """Whether a number came with the call."""

    PRESENT = "present"
    WITHHELD = "withheld"
    UNAVAILABLE = "unavailable"
    INVALID = "invalid"


class CallerId(Record):
    """The caller's number and name, raw and normalised."""

    number_raw: str
    name_raw: str
    number: str | None
    name: str | None
    presence: Presence

    def display(self) -> str:
        """Return a short human form, such as ``Kim <+15550100123>``."""
        number = self.number or self.presence.value
        return f"{self.name} <{number}>" if self.name else number


def parse(number_raw: str, name_raw: str, *, country_code: str = "1") -> CallerId:
    """Normalise caller ID for the given country calling code (NANP: "1")."""
    presence, number = normalise_number(number_raw, country_code=country_code)
    return CallerId(
        number_raw=number_raw,
        name_raw=name_raw,
        number=number,
        name=normalise_name(name_raw),
        presence=presence,
    )


def normalise_number(
    raw: str, *, country_code: str = "1"
) -> tuple[Presence, str | None]:
    """Return the presence and the E.164 form of ``raw``, if it has one."""
    value = raw.strip()
    if value.lower() in WITHHELD:
        return Presence.WITHHELD, None
    if value.lower() in UNAVAILABLE:
        return Presence.UNAVAILABLE, None
    compact = _FORMATTING.sub("", value)
    if compact.startswith("+"):
        digits = compact[1:]
        international = True
    else:
        digits = compact
        international = False
    if not digits.isdigit() or not digits.isascii():
        return Presence.INVALID, None
    if international:
        return _checked(digits)
    return _checked(_national_to_international(digits, country_code))


def _national_to_international(digits: str, country_code: str) -> str:
    if country_code == "1":
        if len(digits) == NANP_LENGTH:
            return "1" + digits
        if len(digits) == NANP_LENGTH + 1 and digits.startswith("1"):
            return digits
        return ""
    # Elsewhere a national number starts with a trunk prefix 0.
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("0"):
        return country_code + digits[1:]
    return ""


def _checked(digits: str) -> tuple[Presence, str | None]:
    if not 7 <= len(digits) <= MAX_E164_DIGITS:
        return Presence.INVALID, None
    return Presence.PRESENT, "+" + digits


def normalise_name(raw: str) -> str | None:
    """Return a displayable name, or None for empty, marker or carrier values."""
    name = " ".join(raw.split())
    if name.lower() in WITHHELD | UNAVAILABLE:
        return None
    if _CARRIER_NAME.match(name):
        return None
    if any(not char.isprintable() for char in name):
        name = "".join(char for char in name if char.isprintable())
    return name or None
