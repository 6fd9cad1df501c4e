"""Checks that the sounds the call flow plays are present, playable and current."""

from __future__ import annotations

import wave
from pathlib import Path

from screener.config import Config
from screener.errors import SoundsError
from screener.sounds.builder import is_current, plan, read_manifest
from screener.sounds.names import SOUND_EXTENSION, required_sounds
from screener.sounds.tones import SAMPLE_RATE, SAMPLE_WIDTH


def check(config: Config) -> list[str]:
    """Return one message per problem with the sounds ``config`` needs; none if ready.

    Each sound the call flow plays must exist as an 8 kHz mono 16-bit WAV file
    and match the configuration it was built from.
    """
    build_dir = config.sounds.build_dir
    problems: list[str] = []
    for basename in required_sounds(config):
        problem = check_format(build_dir / (basename + SOUND_EXTENSION))
        if problem is not None:
            problems.append(problem)

    try:
        jobs = plan(config)
    except SoundsError as exc:
        return [*problems, str(exc)]
    manifest = read_manifest(build_dir)
    required = set(required_sounds(config))
    for job in jobs:
        path = build_dir / (job.basename + SOUND_EXTENSION)
        if job.basename not in required or not path.exists():
            continue
        if not is_current(build_dir, job, manifest.get(job.basename)):
            problems.append(
                f"{str(path)!r} is out of date with the configuration; "
                "rebuild the sounds"
            )
    return problems


def check_format(path: Path) -> str | None:
    """Return why ``path`` is not an 8 kHz mono 16-bit WAV file, or None if it is."""
    try:
        with wave.open(str(path), "rb") as reader:
            rate = reader.getframerate()
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            frames = reader.getnframes()
    except FileNotFoundError:
        return f"{str(path)!r} is missing; build the sounds"
    except (OSError, EOFError, wave.Error) as exc:
        return f"{str(path)!r} is not a valid WAV file: {exc}"
    if rate != SAMPLE_RATE:
        return f"{str(path)!r} has sample rate {rate} Hz, expected {SAMPLE_RATE} Hz"
    if channels != 1:
        return f"{str(path)!r} has {channels} channels, expected 1"
    if width != SAMPLE_WIDTH:
        return f"{str(path)!r} has {8 * width}-bit samples, expected 16-bit"
    if frames == 0:
        return f"{str(path)!r} contains no samples"
    return None
