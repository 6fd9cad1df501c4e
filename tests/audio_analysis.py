"""Tone analysis for tests: find tone segments and SIT sequences in a recording.

Levels are in dBFS relative to a full-scale sine, so a sine of peak 1.0 (32768
in 16-bit PCM) is 0 dBFS by both its peak and its RMS. Durations are measured
at half amplitude, as a tone detector times them.
"""

from __future__ import annotations

import itertools
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

Samples = NDArray[np.float64]

# North American SIT, as its specification gives it: per code, tone 1, 2 and 3
# as (frequency in Hz, duration in seconds).
SHORT = 0.274
LONG = 0.380
SIT_SPEC: dict[str, tuple[tuple[float, float], ...]] = {
    "IC": ((913.8, SHORT), (1370.6, SHORT), (1776.7, LONG)),
    "VC": ((985.2, LONG), (1370.6, SHORT), (1776.7, LONG)),
    "RO": ((913.8, SHORT), (1428.5, LONG), (1776.7, LONG)),
    "NC": ((985.2, LONG), (1428.5, LONG), (1776.7, LONG)),
}
SIT_FREQUENCIES = ((913.8, 985.2), (1370.6, 1428.5), (1776.7,))
FREQUENCY_TOLERANCE = 0.002
DURATION_TOLERANCE = 0.05
MAX_GAP = 0.004

# Frame analysis that finds candidate tones: 16 ms Hann frames every 2 ms.
FRAME_SECONDS = 0.016
HOP_SECONDS = 0.002
FRAME_FFT = 1024
# Share of a frame's energy that must lie in the main lobe around its peak.
MIN_PURITY = 0.9
MIN_LEVEL_DBFS = -60.0
# Consecutive frames belong to one tone while their frequency stays this close.
GROUP_TOLERANCE = 0.015
# Length of the Hann kernel that smooths the demodulated envelope. Its first
# zero lies at 2 / 8 ms = 250 Hz, below the smallest spacing between SIT tones
# (348 Hz), so a neighbouring tone leaks in at -31 dB at most.
ENVELOPE_SECONDS = 0.008


@dataclass(frozen=True)
class ToneSegment:
    """One steady tone: frequency in Hz, start and end in seconds, RMS level."""

    frequency: float
    start: float
    end: float
    level_dbfs: float

    @property
    def duration(self) -> float:
        """Seconds between the half-amplitude points."""
        return self.end - self.start


def read_wav(path: Path) -> tuple[Samples, int]:
    """Return the samples of a 16-bit mono WAV file, scaled to ±1, and its rate."""
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2 or reader.getnchannels() != 1:
            raise ValueError(f"{path} is not 16-bit mono")
        rate = reader.getframerate()
        data = reader.readframes(reader.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0, rate


def level_dbfs(samples: Samples) -> float:
    """Return the RMS level of ``samples`` in dBFS relative to a full-scale sine."""
    rms = float(np.sqrt(np.mean(np.square(samples))))
    return 20 * float(np.log10(rms * np.sqrt(2))) if rms > 0 else -np.inf


def peak_dbfs(samples: Samples) -> float:
    """Return the largest absolute sample of ``samples`` in dBFS."""
    peak = float(np.max(np.abs(samples)))
    return 20 * float(np.log10(peak)) if peak > 0 else -np.inf


def active_level_dbfs(samples: Samples, rate: int, *, range_db: float = 25.0) -> float:
    """Return the RMS level of the 20 ms frames within ``range_db`` of the loudest."""
    size = int(rate * 0.02)
    count = len(samples) // size
    frames = samples[: count * size].reshape(count, size)
    powers = np.mean(np.square(frames), axis=1)
    active = powers[powers >= powers.max() * 10 ** (-range_db / 10)]
    return 10 * float(np.log10(np.mean(active) * 2))


def dominant_frequency(samples: Samples, rate: int, near: float | None = None) -> float:
    """Return the frequency of the strongest spectral peak, to a fraction of a Hz.

    A Hann window, zero-padding to at least 2**17 points and parabolic
    interpolation of the log magnitude put a steady tone of 100 ms or more
    within 0.01 Hz. With ``near``, the peak is searched within ±3 % of it.
    """
    size = max(1 << 17, 1 << int(np.ceil(np.log2(len(samples) * 16))))
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), n=size))
    low, high = 1, len(spectrum) - 1
    if near is not None:
        low = max(1, int(near * 0.97 * size / rate))
        high = min(len(spectrum) - 1, int(near * 1.03 * size / rate) + 1)
    peak = low + int(np.argmax(spectrum[low:high]))
    before, at, after = np.log(spectrum[peak - 1 : peak + 2] + 1e-300)
    offset = 0.5 * (before - after) / (before - 2 * at + after)
    return float((peak + offset) * rate / size)


def find_tones(
    samples: Samples, rate: int, *, min_duration: float = 0.05
) -> list[ToneSegment]:
    """Return every steady tone of at least ``min_duration`` seconds, in order.

    Speech and noise are left out because their frames are not pure tones or
    their frequency does not hold still for ``min_duration``.
    """
    runs = _tonal_runs(samples, rate)
    frame = int(FRAME_SECONDS * rate)
    hop = int(HOP_SECONDS * rate)
    tones = []
    for first, last, rough in runs:
        start = first * hop
        end = last * hop + frame
        if (end - start) / rate < min_duration:
            continue
        tones.append(_measure(samples, rate, start, end, rough))
    return tones


def _tonal_runs(samples: Samples, rate: int) -> list[tuple[int, int, float]]:
    """Return runs of consecutive pure-tone frames as (first, last, frequency)."""
    frame = int(FRAME_SECONDS * rate)
    hop = int(HOP_SECONDS * rate)
    if len(samples) < frame:
        return []
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), n=FRAME_FFT)) ** 2
    peaks = np.argmax(power[:, 1:-1], axis=1) + 1
    lobe = 2 * FRAME_FFT // frame
    cumulative = np.concatenate(
        [np.zeros((len(power), 1)), np.cumsum(power, axis=1)], axis=1
    )
    rows = np.arange(len(power))
    low = np.maximum(peaks - lobe, 0)
    high = np.minimum(peaks + lobe + 1, power.shape[1])
    in_lobe = cumulative[rows, high] - cumulative[rows, low]
    total = cumulative[:, -1]
    purity = np.divide(in_lobe, total, out=np.zeros_like(total), where=total > 0)
    levels = 10 * np.log10(np.mean(np.square(frames), axis=1) * 2 + 1e-30)
    tonal = (purity >= MIN_PURITY) & (levels >= MIN_LEVEL_DBFS)
    frequencies = peaks * rate / FRAME_FFT

    runs: list[tuple[int, int, float]] = []
    first: int | None = None
    for index in range(len(frames)):
        if first is not None and (
            not tonal[index]
            or abs(frequencies[index] / frequencies[first] - 1) > GROUP_TOLERANCE
        ):
            runs.append((first, index - 1, float(np.median(frequencies[first:index]))))
            first = None
        if first is None and tonal[index]:
            first = index
    if first is not None:
        runs.append((first, len(frames) - 1, float(np.median(frequencies[first:]))))
    return runs


def _measure(
    samples: Samples, rate: int, start: int, end: int, rough: float
) -> ToneSegment:
    """Measure the tone roughly between samples ``start`` and ``end``."""
    margin = int(FRAME_SECONDS * rate)
    core_start, core_end = start + margin, end - margin
    if core_end - core_start < margin:
        core_start, core_end = start, end
    frequency = dominant_frequency(samples[core_start:core_end], rate, near=rough)

    envelope = _envelope(samples, rate, frequency)
    reference = float(np.median(envelope[core_start:core_end]))
    half = reference / 2
    rise = core_start
    while rise > 0 and envelope[rise - 1] >= half:
        rise -= 1
    fall = core_end - 1
    while fall < len(envelope) - 1 and envelope[fall + 1] >= half:
        fall += 1
    # Interpolate between the last sample below and the first above half.
    rise_time = float(rise)
    if rise > 0:
        below, above = envelope[rise - 1], envelope[rise]
        rise_time = rise - (above - half) / (above - below)
    fall_time = float(fall)
    if fall < len(envelope) - 1:
        above, below = envelope[fall], envelope[fall + 1]
        fall_time = fall + (above - half) / (above - below)
    return ToneSegment(
        frequency=frequency,
        start=rise_time / rate,
        end=fall_time / rate,
        level_dbfs=level_dbfs(samples[core_start:core_end]),
    )


def _envelope(samples: Samples, rate: int, frequency: float) -> Samples:
    """Return the amplitude of ``samples`` at ``frequency``, sample by sample."""
    times = np.arange(len(samples)) / rate
    baseband = samples * np.exp(-2j * np.pi * frequency * times)
    size = int(ENVELOPE_SECONDS * rate) | 1
    kernel = np.hanning(size + 2)[1:-1]
    kernel /= kernel.sum()
    smoothed = np.convolve(baseband, kernel, mode="same")
    return np.asarray(2 * np.abs(smoothed), dtype=np.float64)


def find_sit_sequences(
    samples: Samples, rate: int, *, tolerance: float = 0.01, max_gap: float = 0.05
) -> list[list[ToneSegment]]:
    """Return every SIT-like sequence of three tones in ``samples``, in order.

    A sequence is three tones, each within ``tolerance`` of a frequency that
    its position allows, with gaps of at most ``max_gap`` seconds. These bounds
    are looser than a detector's, so a sequence slightly out of specification
    is still found and :func:`sit_deviations` can list what is wrong with it.
    """
    tones = find_tones(samples, rate)
    sequences = []
    index = 0
    while index + 3 <= len(tones):
        candidate = tones[index : index + 3]
        if _looks_like_sit(candidate, tolerance, max_gap):
            sequences.append(candidate)
            index += 3
        else:
            index += 1
    return sequences


def _looks_like_sit(tones: list[ToneSegment], tolerance: float, max_gap: float) -> bool:
    for tone, allowed in zip(tones, SIT_FREQUENCIES, strict=True):
        if not any(abs(tone.frequency / f - 1) <= tolerance for f in allowed):
            return False
    return all(gap <= max_gap for gap in gaps(tones))


def find_sit(samples: Samples, rate: int) -> list[ToneSegment]:
    """Return the three tones of the first SIT in ``samples``, or [] if none."""
    sequences = find_sit_sequences(samples, rate)
    return sequences[0] if sequences else []


def count_sit(samples: Samples, rate: int) -> int:
    """Return how many SIT sequences ``samples`` contains."""
    return len(find_sit_sequences(samples, rate))


def gaps(tones: list[ToneSegment]) -> list[float]:
    """Return the seconds between each tone's end and the next tone's start."""
    return [after.start - before.end for before, after in itertools.pairwise(tones)]


def sit_deviations(tones: list[ToneSegment], code: str) -> list[str]:
    """Return how ``tones`` miss the specification of SIT ``code``, or []."""
    spec = SIT_SPEC[code]
    if len(tones) != len(spec):
        return [f"expected {len(spec)} tones, found {len(tones)}"]
    deviations = []
    for number, (tone, (frequency, duration)) in enumerate(
        zip(tones, spec, strict=True), 1
    ):
        if abs(tone.frequency / frequency - 1) > FREQUENCY_TOLERANCE:
            deviations.append(
                f"tone {number} is {tone.frequency:.2f} Hz, expected {frequency} Hz"
            )
        if abs(tone.duration / duration - 1) > DURATION_TOLERANCE:
            deviations.append(
                f"tone {number} lasts {tone.duration * 1000:.1f} ms, "
                f"expected {duration * 1000:.0f} ms"
            )
    for number, gap in enumerate(gaps(tones), 1):
        if gap > MAX_GAP:
            deviations.append(f"gap {number} is {gap * 1000:.1f} ms, expected ≤ 4 ms")
    return deviations


def sit_code(tones: list[ToneSegment]) -> str | None:
    """Return the SIT code that ``tones`` meet within tolerance, or None."""
    for code in SIT_SPEC:
        if not sit_deviations(tones, code):
            return code
    return None


def find_occurrences(
    samples: Samples, template: Samples, *, threshold: float = 0.7
) -> list[int]:
    """Return the sample offsets where ``template`` plays in ``samples``.

    Normalised cross-correlation: 1.0 is an exact copy at any level. A prompt
    played through Asterisk into a recording stays sample-exact apart from
    level and a little mixing noise, so a threshold of 0.7 finds each playback
    and rejects other prompts. Matches closer than one template apart are one
    playback, reported at its best-correlated offset.

    A recording may stop a frame or two before the last prompt ends, because
    Asterisk hangs up as the playback finishes, so the end of the recording
    is padded with silence worth a tenth of the template.
    """
    pattern = template.astype(np.float64)
    padding = np.zeros(len(pattern) // 10)
    signal = np.concatenate((samples.astype(np.float64), padding))
    if len(signal) < len(pattern):
        return []
    size = 1 << (len(signal) + len(pattern)).bit_length()
    spectrum = np.fft.rfft(signal, size) * np.conj(np.fft.rfft(pattern, size))
    correlation = np.fft.irfft(spectrum, size)[: len(signal) - len(pattern) + 1]
    energy = np.concatenate(([0.0], np.cumsum(signal**2)))
    window = energy[len(pattern) :] - energy[: -len(pattern)]
    norm = np.sqrt(np.maximum(window, 1e-9) * float(np.sum(pattern**2)))
    score = correlation / norm
    found: list[int] = []
    next_allowed = 0
    for index in np.flatnonzero(score >= threshold):
        if index < next_allowed:
            continue
        end = min(int(index) + len(pattern), len(score))
        best = int(index) + int(np.argmax(score[index:end]))
        found.append(best)
        next_allowed = best + len(pattern)
    return found
