"""The SIT files measured as a detector would: frequency, duration, gaps, level."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from screener.errors import SoundsError
from screener.sounds.tones import sit_wav
from tests.audio_analysis import (
    SIT_SPEC,
    Samples,
    ToneSegment,
    find_tones,
    gaps,
    level_dbfs,
    peak_dbfs,
    read_wav,
)

SOUNDS_DIR = Path(__file__).resolve().parents[1] / "sounds"
CODES = list(SIT_SPEC)
POSITIONS = [(code, position) for code in CODES for position in range(3)]

# A G.711 full-scale sine is +3.17 dBm0, so -24 dBm0 is -27.17 dBFS.
EXPECTED_LEVEL_DBFS = -24.0 - 3.17


def load(code: str) -> Samples:
    samples, rate = read_wav(SOUNDS_DIR / f"sit-{code.lower()}.wav")
    assert rate == 8000
    return samples


def tones_of(code: str) -> list[ToneSegment]:
    return find_tones(load(code), 8000)


@pytest.mark.parametrize("code", CODES)
def test_committed_file_matches_generator(code: str) -> None:
    committed = (SOUNDS_DIR / f"sit-{code.lower()}.wav").read_bytes()
    assert committed == sit_wav(code)


@pytest.mark.parametrize("code", CODES)
def test_sequence_has_three_tones(code: str) -> None:
    assert len(tones_of(code)) == 3


@pytest.mark.parametrize(("code", "position"), POSITIONS)
def test_tone_frequency_within_tolerance(code: str, position: int) -> None:
    expected = SIT_SPEC[code][position][0]
    measured = tones_of(code)[position].frequency
    assert abs(measured / expected - 1) <= 0.002, f"{measured:.3f} Hz"


@pytest.mark.parametrize(("code", "position"), POSITIONS)
def test_tone_frequency_within_a_tenth_hertz(code: str, position: int) -> None:
    # Far inside the tolerance: the generator has no reason to be off at all.
    expected = SIT_SPEC[code][position][0]
    assert abs(tones_of(code)[position].frequency - expected) < 0.1


@pytest.mark.parametrize(("code", "position"), POSITIONS)
def test_tone_duration_within_tolerance(code: str, position: int) -> None:
    expected = SIT_SPEC[code][position][1]
    measured = tones_of(code)[position].duration
    assert abs(measured / expected - 1) <= 0.05, f"{measured * 1000:.1f} ms"


@pytest.mark.parametrize(("code", "position"), POSITIONS)
def test_tone_duration_within_a_millisecond(code: str, position: int) -> None:
    expected = SIT_SPEC[code][position][1]
    assert abs(tones_of(code)[position].duration - expected) < 0.001


@pytest.mark.parametrize("code", CODES)
def test_gaps_at_most_four_ms(code: str) -> None:
    assert max(gaps(tones_of(code))) <= 0.004


@pytest.mark.parametrize("code", CODES)
def test_tones_rise_in_pitch(code: str) -> None:
    frequencies = [tone.frequency for tone in tones_of(code)]
    assert frequencies == sorted(frequencies)


@pytest.mark.parametrize("code", CODES)
def test_first_tone_starts_at_once(code: str) -> None:
    assert tones_of(code)[0].start < 0.002


@pytest.mark.parametrize("code", CODES)
def test_trailing_silence_at_most_50_ms(code: str) -> None:
    samples = load(code)
    assert len(samples) / 8000 - tones_of(code)[-1].end <= 0.050


@pytest.mark.parametrize("code", CODES)
def test_length_is_whole_20_ms_frames(code: str) -> None:
    assert len(load(code)) % 160 == 0


@pytest.mark.parametrize(("code", "position"), POSITIONS)
def test_tone_level_is_minus_24_dbm0(code: str, position: int) -> None:
    level = tones_of(code)[position].level_dbfs
    assert abs(level - EXPECTED_LEVEL_DBFS) < 0.1, f"{level:.2f} dBFS"


@pytest.mark.parametrize("code", CODES)
def test_peak_far_below_full_scale(code: str) -> None:
    assert peak_dbfs(load(code)) < -20.0


@pytest.mark.parametrize("code", CODES)
def test_sequence_starts_from_zero(code: str) -> None:
    # A segment that starts at full amplitude clicks.
    assert abs(load(code)[0]) < 1e-3


@pytest.mark.parametrize("code", CODES)
def test_quiet_between_tones_under_3_ms(code: str) -> None:
    # Counted sample by sample, independent of the envelope measurement: the
    # 2.5 ms between half-amplitude points, plus at most a zero crossing.
    samples = load(code)
    tones = tones_of(code)
    peak = np.max(np.abs(samples))
    for before, after in itertools.pairwise(tones):
        window = samples[round(before.end * 8000) - 40 : round(after.start * 8000) + 40]
        quiet_run = _longest_run(np.abs(window) < peak / 2)
        assert quiet_run < 24, f"{quiet_run} samples"


def _longest_run(mask: np.ndarray) -> int:
    longest = current = 0
    for value in mask:
        current = current + 1 if value else 0
        longest = max(longest, current)
    return longest


@pytest.mark.parametrize(("code", "position"), POSITIONS)
def test_tone_phase_continuous(code: str, position: int) -> None:
    # A pure sine at the measured frequency must explain the whole segment;
    # a phase jump would leave a residual far above the quantisation noise.
    samples = load(code)
    tone = tones_of(code)[position]
    first = round((tone.start + 0.005) * 8000)
    last = round((tone.end - 0.005) * 8000)
    times = np.arange(first, last) / 8000
    basis = np.column_stack(
        [
            np.sin(2 * np.pi * tone.frequency * times),
            np.cos(2 * np.pi * tone.frequency * times),
        ]
    )
    segment = samples[first:last]
    fit, *_ = np.linalg.lstsq(basis, segment, rcond=None)
    residual = level_dbfs(segment - basis @ fit) - level_dbfs(segment)
    assert residual < -50.0, f"residual {residual:.1f} dB"


def test_unknown_code_rejected() -> None:
    with pytest.raises(SoundsError, match="valid: IC, VC, RO, NC"):
        sit_wav("XX")
