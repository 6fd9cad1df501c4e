"""North American (Bellcore) Special Information Tones, generated without numpy.

A SIT is three tone segments in rising pitch. Tones 1 and 2 are each low or
high in frequency and short or long in duration, and that choice encodes the
reason the call failed. Tone 3 is fixed and gives a detector its reference.
Detectors accept ±0.2 % in frequency, ±5 % in duration and gaps of at most
4 ms between segments.

Level convention: 0 dBFS is a full-scale sine (peak 32767 in 16-bit linear PCM),
and that sine is +3.17 dBm0 once Asterisk encodes it to G.711 µ-law (ITU-T
G.711; A-law would give +3.14 dBm0). So a sine at L dBm0 has its peak at
L - 3.17 dBFS.
"""

from __future__ import annotations

import io
import math
import wave
from array import array
from dataclasses import dataclass

from screener.config import SIT_CODES
from screener.errors import SoundsError

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2
FULL_SCALE = 32767

FULL_SCALE_SINE_DBM0 = 3.17
LEVEL_DBM0 = -24.0

# Each segment ramps up and down with a raised cosine of this length. The ramp
# crosses half amplitude in its middle, so a detector that times segments at
# half amplitude measures the nominal duration and a gap of one ramp length (2.5 ms,
# inside the 4 ms limit) between segments.
RAMP_SECONDS = 0.0025

# The end is padded with silence to a whole 20 ms frame, the usual packet size
# of 8 kHz telephone audio, so the last ramp never falls in a short last packet.
FRAME_SAMPLES = 160

LOW_1 = 913.8
HIGH_1 = 985.2
LOW_2 = 1370.6
HIGH_2 = 1428.5
TONE_3 = 1776.7
SHORT = 0.274
LONG = 0.380


@dataclass(frozen=True)
class Tone:
    """One segment of a SIT: frequency in Hz, duration in seconds."""

    frequency: float
    duration: float


SIT_SEQUENCES: dict[str, tuple[Tone, Tone, Tone]] = {
    # Intercept: vacant number or number changed; dialers drop the number.
    "IC": (Tone(LOW_1, SHORT), Tone(LOW_2, SHORT), Tone(TONE_3, LONG)),
    # Vacant code: the area code or exchange does not exist.
    "VC": (Tone(HIGH_1, LONG), Tone(LOW_2, SHORT), Tone(TONE_3, LONG)),
    # Reorder: equipment irregularity, worth a retry later.
    "RO": (Tone(LOW_1, SHORT), Tone(HIGH_2, LONG), Tone(TONE_3, LONG)),
    # No circuit: trunks busy, worth a retry later.
    "NC": (Tone(HIGH_1, LONG), Tone(HIGH_2, LONG), Tone(TONE_3, LONG)),
}


def amplitude(level_dbm0: float = LEVEL_DBM0) -> float:
    """Return the peak sample value of a sine at ``level_dbm0``."""
    return FULL_SCALE * 10 ** ((level_dbm0 - FULL_SCALE_SINE_DBM0) / 20)


def sit_samples(code: str, *, level_dbm0: float = LEVEL_DBM0) -> array[int]:
    """Return the 16-bit samples of the SIT ``code`` at 8 kHz.

    The sequence starts at the first ramp with no leading silence and ends with
    less than one 20 ms frame of silence, so the announcement can follow within
    the 300 ms a detector allows.
    """
    try:
        sequence = SIT_SEQUENCES[code]
    except KeyError:
        valid = ", ".join(SIT_CODES)
        raise SoundsError(f"unknown SIT code {code!r}; valid: {valid}") from None
    peak = amplitude(level_dbm0)
    if peak > FULL_SCALE:
        raise SoundsError(f"SIT level {level_dbm0} dBm0 would clip")

    samples: array[int] = array("h")
    for tone in sequence:
        samples.extend(_segment(tone, peak))
    samples.extend([0] * (-len(samples) % FRAME_SAMPLES))
    return samples


def _segment(tone: Tone, peak: float) -> array[int]:
    ramp = round(RAMP_SECONDS * SAMPLE_RATE)
    # The ramps each add half their length outside the half-amplitude points.
    count = round(tone.duration * SAMPLE_RATE) + ramp
    step = 2 * math.pi * tone.frequency / SAMPLE_RATE
    segment: array[int] = array("h", bytes(2 * count))
    for n in range(count):
        edge = min(n, count - 1 - n)
        gain = 1.0
        if edge < ramp:
            gain = 0.5 * (1 - math.cos(math.pi * (edge + 0.5) / ramp))
        # The phase comes from the sample index, not a running sum, so it
        # stays continuous and accumulates no rounding error.
        segment[n] = round(peak * gain * math.sin(step * n))
    return segment


def sit_wav(code: str, *, level_dbm0: float = LEVEL_DBM0) -> bytes:
    """Return the SIT ``code`` as an 8 kHz mono 16-bit WAV file."""
    return wav_bytes(sit_samples(code, level_dbm0=level_dbm0))


def wav_bytes(samples: array[int]) -> bytes:
    """Return 8 kHz mono 16-bit ``samples`` as the bytes of a WAV file."""
    if samples.itemsize != SAMPLE_WIDTH:
        raise ValueError(f"expected 16-bit samples, got {8 * samples.itemsize}-bit")
    if samples.typecode != "h":
        raise ValueError(f"expected signed samples, got type code {samples.typecode!r}")
    data = samples
    if array("h", [1]).tobytes() != b"\x01\x00":
        data = array("h", samples)
        data.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(data.tobytes())
    return buffer.getvalue()
