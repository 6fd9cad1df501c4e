"""Speech synthesis and conversion of any audio file to a telephone prompt.

Every prompt, synthesised or recorded, goes through the same steps. ffmpeg
decodes and resamples it to 8 kHz mono 16-bit, because its resampler filters
out what lies above 4 kHz where pydub's would alias. Then pydub trims the
silence at both ends and sets the loudness. pydub is imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from screener.errors import SoundsError
from screener.sounds.tones import (
    FULL_SCALE,
    FULL_SCALE_SINE_DBM0,
    SAMPLE_RATE,
    wav_bytes,
)

# Speech sits 4 dB above the SIT (-24 dBm0), so the tones stay below the
# announcement as detectors expect, and the loudest peak stays 3 dB below full
# scale to leave room for the codec.
SPEECH_LEVEL_DBM0 = -20.0
PEAK_CEILING_DBFS = -3.0

# 20 ms frames within this many dB of the loudest frame count as speech when
# measuring the level, so pauses between words do not lower it.
ACTIVE_RANGE_DB = 25.0
LEVEL_FRAME_MS = 20

# Leading and trailing 10 ms chunks quieter than the peak by this many dB are
# cut. A margin of one chunk stays, faded, so a soft onset keeps its start.
TRIM_RANGE_DB = 45.0
TRIM_CHUNK_MS = 10
FADE_MS = 5

SUBPROCESS_TIMEOUT = 60.0
ESPEAK_INSTALL_HINT = "install it with `apt-get install espeak-ng`"
FFMPEG_INSTALL_HINT = "install it with `apt-get install ffmpeg`"


def synthesise(text: str, voice: str) -> bytes:
    """Speak ``text`` with espeak-ng and return it as a finished prompt WAV."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SoundsError(f"espeak-ng not found on PATH; {ESPEAK_INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="screener-speech-") as workdir:
        speech = Path(workdir) / "speech.wav"
        command = [espeak, "-v", voice, "-b", "1", "-w", str(speech), "--stdin"]
        result = _run(command, "espeak-ng", text.encode("utf-8"))
        if result.returncode != 0 or not speech.exists():
            message = _last_line(result.stderr) or f"exit status {result.returncode}"
            raise SoundsError(f"espeak-ng failed on voice {voice!r}: {message}")
        return prompt_wav(speech)


def prompt_wav(source: Path) -> bytes:
    """Convert the audio file ``source`` to a finished prompt WAV.

    ``source`` may be anything ffmpeg reads, at any rate and channel count.
    Every failure raises :class:`SoundsError` naming ``source``.
    """
    segment = _decode(source)
    segment = _trim(segment, source)
    segment = _normalise(segment)
    return _export(segment)


def _decode(source: Path) -> Any:
    from pydub import AudioSegment

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SoundsError(f"ffmpeg not found on PATH; {FFMPEG_INSTALL_HINT}")
    if not source.is_file():
        raise SoundsError(f"audio file {str(source)!r} not found")
    command = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(source),
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "s16le",
        "-acodec",
        "pcm_s16le",
        "-",
    ]
    result = _run(command, "ffmpeg", b"")
    if result.returncode != 0:
        message = _last_line(result.stderr) or f"exit status {result.returncode}"
        raise SoundsError(f"failed to decode {str(source)!r}: {message}")
    if not result.stdout:
        raise SoundsError(f"failed to decode {str(source)!r}: it contains no audio")
    return AudioSegment(
        data=result.stdout, sample_width=2, frame_rate=SAMPLE_RATE, channels=1
    )


def _trim(segment: Any, source: Path) -> Any:
    from pydub.silence import detect_leading_silence

    if segment.max == 0:
        raise SoundsError(f"{str(source)!r} contains only silence")
    threshold = segment.max_dBFS - TRIM_RANGE_DB
    start = detect_leading_silence(segment, threshold, TRIM_CHUNK_MS)
    end = len(segment) - detect_leading_silence(
        segment.reverse(), threshold, TRIM_CHUNK_MS
    )
    start = max(0, start - TRIM_CHUNK_MS)
    end = min(len(segment), end + TRIM_CHUNK_MS)
    trimmed = segment[start:end]
    return trimmed.fade_in(FADE_MS).fade_out(FADE_MS)


def _normalise(segment: Any) -> Any:
    gain = SPEECH_LEVEL_DBM0 - active_level_dbm0(segment)
    peak_dbfs = 20 * math.log10(segment.max / FULL_SCALE)
    gain = min(gain, PEAK_CEILING_DBFS - peak_dbfs)
    return segment.apply_gain(gain)


def active_level_dbm0(segment: Any) -> float:
    """Return the RMS level in dBm0 of the frames of ``segment`` that hold sound.

    A crude form of the active speech level of ITU-T P.56: frames more than
    ``ACTIVE_RANGE_DB`` below the loudest 20 ms frame are left out.
    """
    frames = [
        segment[start : start + LEVEL_FRAME_MS]
        for start in range(0, len(segment), LEVEL_FRAME_MS)
    ]
    powers = [float(frame.rms) ** 2 for frame in frames if len(frame) > 0]
    floor = max(powers) * 10 ** (-ACTIVE_RANGE_DB / 10)
    active = [power for power in powers if power >= floor and power > 0]
    if not active:
        return -math.inf
    rms = math.sqrt(sum(active) / len(active))
    return 20 * math.log10(rms * math.sqrt(2) / FULL_SCALE) + FULL_SCALE_SINE_DBM0


def _export(segment: Any) -> bytes:
    samples = segment.get_array_of_samples()
    return wav_bytes(samples)


def _run(
    command: list[str], program: str, stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            command, input=stdin, capture_output=True, timeout=SUBPROCESS_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise SoundsError(
            f"{program} timed out after {SUBPROCESS_TIMEOUT:.0f} s"
        ) from None
    except OSError as exc:
        raise SoundsError(f"failed to run {program}: {exc.strerror}") from exc


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else ""
