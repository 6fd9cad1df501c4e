"""The tone analysis on synthetic signals, independent of the SIT generator."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio_analysis import (
    Samples,
    count_sit,
    dominant_frequency,
    find_occurrences,
    find_sit,
    find_tones,
    gaps,
    sit_code,
    sit_deviations,
)

RATE = 8000
AMPLITUDE = 0.05


def tone(frequency: float, seconds: float) -> Samples:
    """Return a sine with hard edges, so its half-amplitude points are its ends."""
    times = np.arange(round(seconds * RATE)) / RATE
    return AMPLITUDE * np.sin(2 * np.pi * frequency * times)


def silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * RATE))


def noise(seconds: float, seed: int = 1) -> Samples:
    """Return noise shaped like speech: buzz plus hiss, changing pitch."""
    generator = np.random.default_rng(seed)
    count = round(seconds * RATE)
    times = np.arange(count) / RATE
    pitch = 120 + 40 * np.sin(2 * np.pi * 3 * times)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    buzz = sum(np.sin(k * phase) / k for k in range(1, 20))
    return 0.05 * buzz + 0.02 * generator.standard_normal(count)


def sit(first: float, second: float, durations: tuple[float, float]) -> Samples:
    return np.concatenate(
        [
            tone(first, durations[0]),
            tone(second, durations[1]),
            tone(1776.7, 0.380),
        ]
    )


IC = sit(913.8, 1370.6, (0.274, 0.274))
ZAPATELLER = np.concatenate([tone(950, 0.330), tone(1400, 0.330), tone(1800, 0.330)])


def test_frequency_within_a_hundredth_hertz() -> None:
    measured = dominant_frequency(tone(1234.5, 0.25), RATE)
    assert abs(measured - 1234.5) < 0.01


def test_single_tone_start_and_duration() -> None:
    signal = np.concatenate([silence(0.1), tone(1000, 0.3), silence(0.1)])
    tones = find_tones(signal, RATE)
    assert len(tones) == 1
    assert abs(tones[0].start - 0.1) < 0.0005
    assert abs(tones[0].duration - 0.3) < 0.0005


def test_level_of_known_sine() -> None:
    tones = find_tones(tone(1000, 0.3), RATE)
    expected = 20 * np.log10(AMPLITUDE)
    assert abs(tones[0].level_dbfs - expected) < 0.1


def test_intercept_found_and_classified() -> None:
    tones = find_sit(IC, RATE)
    assert sit_code(tones) == "IC"


@pytest.mark.parametrize(
    ("code", "first", "second", "durations"),
    [
        ("VC", 985.2, 1370.6, (0.380, 0.274)),
        ("RO", 913.8, 1428.5, (0.274, 0.380)),
        ("NC", 985.2, 1428.5, (0.380, 0.380)),
    ],
)
def test_other_codes_classified(
    code: str, first: float, second: float, durations: tuple[float, float]
) -> None:
    assert sit_code(find_sit(sit(first, second, durations), RATE)) == code


def test_gap_between_tones_measured() -> None:
    signal = np.concatenate(
        [tone(913.8, 0.274), silence(0.010), tone(1370.6, 0.274), tone(1776.7, 0.38)]
    )
    measured = gaps(find_sit(signal, RATE))
    assert abs(measured[0] - 0.010) < 0.0005
    assert abs(measured[1]) < 0.0005


def test_long_gap_is_a_deviation() -> None:
    signal = np.concatenate(
        [tone(913.8, 0.274), silence(0.010), tone(1370.6, 0.274), tone(1776.7, 0.38)]
    )
    assert sit_deviations(find_sit(signal, RATE), "IC") == [
        "gap 1 is 10.0 ms, expected ≤ 4 ms"
    ]


def test_zapateller_tones_rejected() -> None:
    assert find_sit(ZAPATELLER, RATE) == []


def test_950_hz_first_tone_rejected() -> None:
    signal = sit(950.0, 1370.6, (0.274, 0.274))
    assert find_sit(signal, RATE) == []


def test_slightly_off_frequency_not_classified() -> None:
    # 0.3 % above 913.8 Hz: found as a SIT, but outside the 0.2 % tolerance.
    signal = sit(913.8 * 1.003, 1370.6, (0.274, 0.274))
    tones = find_sit(signal, RATE)
    assert len(tones) == 3
    assert sit_code(tones) is None


def test_short_tone_not_classified() -> None:
    # 250 ms is 8.8 % short of 274 ms.
    assert sit_code(find_sit(sit(913.8, 1370.6, (0.250, 0.274)), RATE)) is None


def test_sit_found_after_silence_before_speech() -> None:
    signal = np.concatenate([silence(0.7), IC, silence(0.1), noise(2.0)])
    tones = find_sit(signal, RATE)
    assert len(tones) == 3
    assert abs(tones[0].start - 0.7) < 0.0005
    assert sit_code(tones) == "IC"


def test_speech_alone_has_no_sit() -> None:
    assert count_sit(noise(3.0), RATE) == 0


def test_two_sequences_counted() -> None:
    round_ = np.concatenate([IC, silence(0.1), noise(1.5)])
    signal = np.concatenate([silence(0.3), round_, silence(0.5), round_])
    assert count_sit(signal, RATE) == 2


def test_mu_law_round_trip_keeps_sit() -> None:
    # What Asterisk sends a caller is G.711 µ-law: compress, quantise, expand.
    mu = 255.0
    compressed = np.sign(IC) * np.log1p(mu * np.abs(IC)) / np.log1p(mu)
    quantised = np.round(compressed * 127) / 127
    expanded = np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu
    assert sit_code(find_sit(expanded, RATE)) == "IC"


def test_occurrences_found_at_each_offset() -> None:
    rng = np.random.default_rng(7)
    template = rng.normal(0, 3000, 4000)
    recording = rng.normal(0, 30, 40000)
    for offset in (1000, 20000):
        recording[offset : offset + 4000] += template * 0.5
    assert find_occurrences(recording, template) == [1000, 20000]


def test_occurrences_reject_other_sound() -> None:
    rng = np.random.default_rng(8)
    template = rng.normal(0, 3000, 4000)
    recording = rng.normal(0, 3000, 40000)
    assert find_occurrences(recording, template) == []
