"""Consistency checks of the DAHDI and chan_dahdi files for the analog card.

The checks parse asterisk-conf/system.conf (DAHDI), chan_dahdi_screener.conf
and the dialplan files, and verify the signalling swap (FXO port with FXS
signalling and the reverse), the channel numbers, the contexts and the
distinctive-ring cadence. Each check is also run on a broken copy to show that
it can fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SYSTEM_CONF = PROJECT / "asterisk-conf" / "system.conf"
CHAN_DAHDI_CONF = PROJECT / "asterisk-conf" / "chan_dahdi_screener.conf"
DIALPLAN_FILES = (
    PROJECT / "asterisk-conf" / "extensions_screener.conf",
    PROJECT / "hardware" / "extensions_handsets.conf",
)

# system.conf signalling keyword -> the chan_dahdi signalling that must match.
SIGNALLING_PAIRS = {"fxsks": "fxs_ks", "fxoks": "fxo_ks"}
CID_SIGNALLING = {"bell", "v23", "v23_jp", "dtmf", "smdi"}
CID_START = {"ring", "polarity", "polarity_IN", "dtmf"}


def parse_channels(spec: str) -> set[int]:
    """Parse a DAHDI channel list such as ``1-4,7`` into channel numbers."""
    channels: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            first, last = (int(value) for value in part.split("-", 1))
            channels.update(range(first, last + 1))
        else:
            channels.add(int(part))
    return channels


@dataclass
class SystemConf:
    """The settings of a DAHDI system.conf that matter here."""

    signalling: dict[int, str] = field(default_factory=dict)
    echo_cancelled: set[int] = field(default_factory=set)
    loadzones: list[str] = field(default_factory=list)
    defaultzone: str = ""


def parse_system_conf(text: str) -> SystemConf:
    conf = SystemConf()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if key in SIGNALLING_PAIRS:
            for channel in parse_channels(value):
                conf.signalling[channel] = key
        elif key == "echocanceller":
            _name, _, spec = value.partition(",")
            conf.echo_cancelled |= parse_channels(spec)
        elif key == "loadzone":
            conf.loadzones.append(value)
        elif key == "defaultzone":
            conf.defaultzone = value
    return conf


def parse_asterisk_conf(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Parse an Asterisk .conf into (section, [(key, value), ...]) in order.

    Both ``key = value`` and ``key => value`` are accepted, and ``;`` starts a
    comment, as in Asterisk's own parser. ``#include`` lines are skipped.
    """
    sections: list[tuple[str, list[tuple[str, str]]]] = [("", [])]
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([^\]]+)\](\(.*\))?", line)
        if header:
            sections.append((header.group(1), []))
            continue
        key, separator, value = line.partition("=")
        assert separator, f"line without '=': {raw!r}"
        sections[-1][1].append((key.strip(), value.lstrip(">").strip()))
    return sections


@dataclass
class DahdiChannel:
    """One chan_dahdi configuration section with a dahdichan line."""

    section: str
    channels: set[int]
    settings: dict[str, str]


def parse_chan_dahdi(text: str) -> tuple[list[DahdiChannel], list[str]]:
    """Return the channel sections and every cadence line, in file order."""
    channels = []
    cadences = []
    for section, pairs in parse_asterisk_conf(text):
        settings: dict[str, str] = {}
        for key, value in pairs:
            if key == "cadence":
                cadences.append(value)
            else:
                settings[key] = value
        if "dahdichan" in settings:
            channels.append(
                DahdiChannel(section, parse_channels(settings["dahdichan"]), settings)
            )
    return channels, cadences


def dialplan_contexts(texts: list[str]) -> set[str]:
    return {
        section
        for text in texts
        for section, _pairs in parse_asterisk_conf(text)
        if section
    }


def default_dial_string(dialplan: str, variable: str) -> str:
    """Return the default a dialplan fills in for ``variable``."""
    match = re.search(rf"Set\({variable}=([^)]+)\)\)", dialplan)
    assert match, f"no default for {variable} in the dialplan"
    return match.group(1)


def parse_dahdi_dial(dial: str) -> list[tuple[int, int | None]]:
    """Parse ``DAHDI/2r2&DAHDI/3`` into [(channel, cadence or None), ...]."""
    targets = []
    for target in dial.split("&"):
        match = re.fullmatch(r"DAHDI/(\d+)(?:r(\d+))?(?:/.*)?", target.strip())
        assert match, f"not a DAHDI channel dial string: {target!r}"
        cadence = int(match.group(2)) if match.group(2) else None
        targets.append((int(match.group(1)), cadence))
    return targets


def check_signalling(system: SystemConf, channels: list[DahdiChannel]) -> list[str]:
    """Return a problem for each channel whose two files disagree."""
    problems = []
    configured: dict[int, DahdiChannel] = {}
    for entry in channels:
        for channel in entry.channels:
            if channel in configured:
                problems.append(f"channel {channel} is configured twice")
            configured[channel] = entry
    if set(configured) != set(system.signalling):
        problems.append(
            f"chan_dahdi channels {sorted(configured)} differ from system.conf "
            f"channels {sorted(system.signalling)}"
        )
    for channel, keyword in sorted(system.signalling.items()):
        if channel not in configured:
            continue
        actual = configured[channel].settings.get("signalling")
        expected = SIGNALLING_PAIRS[keyword]
        if actual != expected:
            problems.append(
                f"channel {channel} is {keyword} in system.conf, so chan_dahdi "
                f"needs signalling={expected}, not {actual}"
            )
    return problems


def check_cadence(cadences: list[str], number: int) -> list[str]:
    """Return problems with cadence ``number`` (1-based) as DAHDI/NrN uses it."""
    if number > len(cadences):
        return [f"cadence {number} is used but only {len(cadences)} are defined"]
    values = [int(value) for value in cadences[number - 1].split(",")]
    problems = []
    if len(values) % 2:
        problems.append(f"cadence {number} has an odd number of times {values}")
    if any(value == 0 for value in values) or any(value < 0 for value in values[::2]):
        problems.append(f"cadence {number} has a zero or negative ring time")
    if sum(1 for value in values if value < 0) > 1:
        problems.append(f"cadence {number} marks the caller ID spill twice")
    return problems


@pytest.fixture(scope="module")
def system() -> SystemConf:
    return parse_system_conf(SYSTEM_CONF.read_text())


@pytest.fixture(scope="module")
def chan_dahdi() -> tuple[list[DahdiChannel], list[str]]:
    return parse_chan_dahdi(CHAN_DAHDI_CONF.read_text())


@pytest.fixture(scope="module")
def dialplans() -> list[str]:
    return [path.read_text() for path in DIALPLAN_FILES]


def line_port(channels: list[DahdiChannel]) -> DahdiChannel:
    ports = [entry for entry in channels if entry.settings["signalling"] == "fxs_ks"]
    assert len(ports) == 1, "expected exactly one FXO port (signalling=fxs_ks)"
    return ports[0]


def handset_port(channels: list[DahdiChannel]) -> DahdiChannel:
    ports = [entry for entry in channels if entry.settings["signalling"] == "fxo_ks"]
    assert len(ports) == 1, "expected exactly one FXS port (signalling=fxo_ks)"
    return ports[0]


def test_system_conf_ports(system: SystemConf) -> None:
    assert system.signalling == {1: "fxsks", 2: "fxoks"}


def test_system_conf_echo_canceller(system: SystemConf) -> None:
    assert system.echo_cancelled >= set(system.signalling)


def test_system_conf_tone_zone(system: SystemConf) -> None:
    assert system.loadzones, "no loadzone line"
    assert system.defaultzone in system.loadzones


def test_signalling_swap_matches(
    system: SystemConf, chan_dahdi: tuple[list[DahdiChannel], list[str]]
) -> None:
    channels, _cadences = chan_dahdi
    assert check_signalling(system, channels) == []


def test_signalling_swap_detects_error(
    system: SystemConf, chan_dahdi: tuple[list[DahdiChannel], list[str]]
) -> None:
    text = CHAN_DAHDI_CONF.read_text()
    swapped = (
        text.replace("signalling = fxs_ks", "signalling = TMP")
        .replace("signalling = fxo_ks", "signalling = fxs_ks")
        .replace("signalling = TMP", "signalling = fxo_ks")
    )
    channels, _cadences = parse_chan_dahdi(swapped)
    problems = check_signalling(system, channels)
    assert len(problems) == 2


def test_channel_mismatch_detected(
    chan_dahdi: tuple[list[DahdiChannel], list[str]],
) -> None:
    channels, _cadences = chan_dahdi
    system = parse_system_conf("fxsks=1\nfxoks=3\n")
    problems = check_signalling(system, channels)
    assert any("differ from system.conf" in problem for problem in problems)


def test_line_port_context(chan_dahdi: tuple[list[DahdiChannel], list[str]]) -> None:
    channels, _cadences = chan_dahdi
    assert line_port(channels).settings["context"] == "screener-incoming"


def test_contexts_exist_in_dialplan(
    chan_dahdi: tuple[list[DahdiChannel], list[str]], dialplans: list[str]
) -> None:
    channels, _cadences = chan_dahdi
    contexts = dialplan_contexts(dialplans)
    for entry in channels:
        assert entry.settings["context"] in contexts, entry.section


def test_line_port_caller_id(chan_dahdi: tuple[list[DahdiChannel], list[str]]) -> None:
    settings = line_port(chan_dahdi[0]).settings
    assert settings["usecallerid"] == "yes"
    assert settings["cidsignalling"] in CID_SIGNALLING
    assert settings["cidstart"] in CID_START


def test_ports_cancel_echo(chan_dahdi: tuple[list[DahdiChannel], list[str]]) -> None:
    for entry in chan_dahdi[0]:
        assert entry.settings["echocancel"] == "yes", entry.section


def test_handset_dial_strings(
    chan_dahdi: tuple[list[DahdiChannel], list[str]], dialplans: list[str]
) -> None:
    channels, cadences = chan_dahdi
    handsets = handset_port(channels).channels
    for variable in ("SCREENER_HANDSETS", "SCREENER_HANDSETS_OTHER"):
        dial = default_dial_string(dialplans[0], variable)
        for channel, cadence in parse_dahdi_dial(dial):
            assert channel in handsets, f"{variable}={dial} is not an FXS port"
            if cadence is not None:
                assert check_cadence(cadences, cadence) == [], variable


def test_other_ring_is_distinct(
    chan_dahdi: tuple[list[DahdiChannel], list[str]], dialplans: list[str]
) -> None:
    _channels, cadences = chan_dahdi
    dial = default_dial_string(dialplans[0], "SCREENER_HANDSETS_OTHER")
    [(_channel, cadence)] = parse_dahdi_dial(dial)
    assert cadence is not None, "the distinctive ring needs an rN suffix"
    assert cadences[cadence - 1] != cadences[0]


def test_missing_cadence_detected() -> None:
    assert check_cadence(["2000,-4000"], 2) != []
    assert check_cadence(["2000,-4000,500,-500"], 1) != []


def test_handsets_dial_the_line(
    chan_dahdi: tuple[list[DahdiChannel], list[str]], dialplans: list[str]
) -> None:
    line = line_port(chan_dahdi[0]).channels
    dials = re.findall(r"Dial\(DAHDI/(\d+)", dialplans[1])
    assert dials, "the handsets' context dials no DAHDI channel"
    for channel in dials:
        assert int(channel) in line


def test_handsets_reach_feature_codes(
    chan_dahdi: tuple[list[DahdiChannel], list[str]], dialplans: list[str]
) -> None:
    port = handset_port(chan_dahdi[0])
    # With immediate = yes every digit goes to the line, never to the codes.
    assert port.settings.get("immediate", "no") == "no"
    context = port.settings["context"]
    section = dialplans[1].split(f"[{context}]", 1)[1].split("\n[", 1)[0]
    includes = re.findall(r"^include => (\S+)", section, re.MULTILINE)
    assert includes[0] == "screener-features"
    assert "exten => *30," in dialplans[0]
