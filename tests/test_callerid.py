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
        ("(555)010-0123", Presence.PRESENT, "+15550100123"),
        ("+1.555.010.0123", Presence.PRESENT, "+15550100123"),
        ("555/010-0123", Presence.PRESENT, "+15550100123"),
        ("\t5550100123\r", Presence.PRESENT, "+15550100123"),
        ("+442079460018", Presence.PRESENT, "+442079460018"),
        ("442079460018", Presence.INVALID, None),
        ("0044 20 7946 0018", Presence.INVALID, None),
        ("PRIVATE", Presence.WITHHELD, None),
        ("anonymous", Presence.WITHHELD, None),
        ("Restricted", Presence.WITHHELD, None),
        ("Out of area", Presence.UNAVAILABLE, None),
        ("UNKNOWN", Presence.UNAVAILABLE, None),
        ("+", Presence.INVALID, None),
        ("15550100123x", Presence.INVALID, None),
        ("25550100123", Presence.INVALID, None),
        ("+1 555 0100 123 4567 89", Presence.INVALID, None),
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


@pytest.mark.parametrize(
    ("raw", "country_code", "number"),
    [
        ("020 7946 0018", "44", "+442079460018"),
        ("0044 20 7946 0018", "44", "+442079460018"),
        ("+1 555 010 0123", "44", "+15550100123"),
        ("030 1234567", "49", "+49301234567"),
        ("20 7946 0018", "44", None),
    ],
)
def test_country_code_reads_national_forms(
    raw: str, country_code: str, number: str | None
) -> None:
    assert normalise_number(raw, country_code=country_code)[1] == number
