"""Caller ID normalisation: each received form and what it becomes."""

import pytest

from screener.callerid import Presence, normalise_name, normalise_number, parse


@pytest.mark.parametrize(
    ("raw", "presence", "number"),
    [
        ("5550100123", Presence.PRESENT, "+15550100123"),
        ("15550100123", Presence.PRESENT, "+15550100123"),
        ("+15550100123", Presence.PRESENT, "+15550100123"),
        ("+1 (555) 010-0123", Presence.PRESENT, "+15550100123"),
        ("555.010.0123", Presence.PRESENT, "+15550100123"),
        ("1-555-010-0123", Presence.PRESENT, "+15550100123"),
        (" 555 010 0123 ", Presence.PRESENT, "+15550100123"),
        ("+44 20 7946 0018", Presence.PRESENT, "+442079460018"),
        ("", Presence.UNAVAILABLE, None),
        ("unknown", Presence.UNAVAILABLE, None),
        ("O", Presence.UNAVAILABLE, None),
        ("Unavailable", Presence.UNAVAILABLE, None),
        ("P", Presence.WITHHELD, None),
        ("Private", Presence.WITHHELD, None),
        ("Anonymous", Presence.WITHHELD, None),
        ("555010", Presence.INVALID, None),
        ("12345678901234567", Presence.INVALID, None),
        ("555-CALL-NOW", Presence.INVALID, None),
        ("٥٥٥٠١٠٠١٢٣", Presence.INVALID, None),
    ],
)
def test_number_forms(raw: str, presence: Presence, number: str | None) -> None:
    assert normalise_number(raw) == (presence, number)


def test_uk_national_number_with_country_44() -> None:
    assert normalise_number("020 7946 0018", country_code="44") == (
        Presence.PRESENT,
        "+442079460018",
    )


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("ACME  SALES", "ACME SALES"),
        ("V1234567890", None),
        ("unknown", None),
        ("P", None),
        ("", None),
        ("Bad\x07Name", "BadName"),
    ],
)
def test_name_forms(raw: str, name: str | None) -> None:
    assert normalise_name(raw) == name


def test_parse_keeps_raw_values() -> None:
    caller = parse("(555) 010-0123", "V555")
    assert caller.number_raw == "(555) 010-0123"
    assert caller.name_raw == "V555"
    assert caller.display() == "+15550100123"
