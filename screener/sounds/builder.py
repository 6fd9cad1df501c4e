"""Incremental, all-or-nothing build of the sound files.

A manifest next to the sounds stores, per file, a hash of everything the file
is made from (text, voice and generator version, or a recording's content) and
a hash of the file itself. A build remakes only the files whose inputs changed
or whose content no longer matches, so changing one name rebuilds only the
prompts that contain it.

Every changed file is rendered to a temporary file in the build directory
before any is renamed into place, so a failed build leaves the previous files
as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from screener.config import PROMPT_NAMES, SIT_CODES, Config
from screener.errors import SoundsError
from screener.sounds.names import SOUND_EXTENSION, all_sounds, prompt_sound, sit_sound
from screener.sounds.tones import sit_wav

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

# Bump a version when its generator's output changes for the same inputs, so
# every file it made is rebuilt.
TONE_VERSION = 1
SPEECH_VERSION = 1
RECORDING_VERSION = 1
# A prompt recording is seconds of audio; an hour of 48 kHz stereo WAV is
# about 700 MB, so this bounds the hashing and decoding of a wrong file.
MAX_RECORDING_BYTES = 200 * 1024 * 1024

# The sounds built from the default configuration, committed with the source.
# A build copies a file from here when its inputs match, so a machine without
# espeak-ng still gets the default prompts. It exists only in a source checkout.
DEFAULTS_DIR = Path(__file__).resolve().parents[2] / "sounds"

# mkstemp creates files with mode 0600, but Asterisk runs as its own user and
# must read them.
FILE_MODE = 0o644


@dataclass(frozen=True)
class Job:
    """How to make one sound: its inputs' hash and the function that renders it."""

    basename: str
    inputs: str
    description: str
    render: Callable[[], bytes]


@dataclass(frozen=True)
class ManifestEntry:
    """Inputs hash, output hash and description of one built file."""

    inputs: str
    output: str
    description: str


@dataclass
class BuildReport:
    """The outcome of a build, by sound basename."""

    build_dir: Path
    built: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> list[str]:
        """Basenames whose file this build wrote, built or copied."""
        return [*self.built, *self.copied]

    def __str__(self) -> str:
        lines = [f"sounds in {self.build_dir} ({self.seconds:.2f} s):"]
        for label, names in (
            ("built", self.built),
            ("copied from the defaults", self.copied),
            ("up to date", self.up_to_date),
        ):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        return "\n".join(lines)


def build(config: Config, *, force: bool = False) -> BuildReport:
    """Build every sound into ``config.sounds.build_dir`` and update the manifest.

    Only sounds whose inputs changed are remade, unless ``force`` is set, which
    also skips copying from the committed defaults. Raises :class:`SoundsError`
    before replacing any file if any sound fails.
    """
    started = time.monotonic()
    build_dir = config.sounds.build_dir
    report = BuildReport(build_dir=build_dir)
    jobs = plan(config)
    manifest = read_manifest(build_dir)
    defaults = _defaults_manifest(build_dir)

    pending: list[tuple[Job, Callable[[], bytes]]] = []
    for job in jobs:
        if not force and is_current(build_dir, job, manifest.get(job.basename)):
            report.up_to_date.append(job.basename)
            continue
        default = None if force else defaults.get(job.basename)
        if default is not None and default.inputs == job.inputs:
            source = DEFAULTS_DIR / (job.basename + SOUND_EXTENSION)
            if _file_hash(source) == default.output:
                pending.append((job, source.read_bytes))
                report.copied.append(job.basename)
                continue
        pending.append((job, job.render))
        report.built.append(job.basename)

    if pending:
        _make_dir(build_dir)
        written = _render_all(build_dir, pending)
        entries = {
            name: entry for name, entry in manifest.items() if name in all_sounds()
        }
        for job, _render in pending:
            entries[job.basename] = ManifestEntry(
                inputs=job.inputs,
                output=written[job.basename],
                description=job.description,
            )
        write_manifest(build_dir, entries)

    report.seconds = time.monotonic() - started
    log.info(
        "sounds in %s: %d built, %d copied, %d up to date in %.2f s",
        build_dir,
        len(report.built),
        len(report.copied),
        len(report.up_to_date),
        report.seconds,
    )
    return report


def plan(config: Config) -> list[Job]:
    """Return a job for every sound a build writes, in ``all_sounds()`` order."""
    jobs = [_tone_job(code) for code in SIT_CODES]
    for prompt in PROMPT_NAMES:
        recording = config.prompts.recordings.get(prompt)
        if recording is None:
            jobs.append(_speech_job(config, prompt))
        else:
            jobs.append(_recording_job(prompt, recording))
    return jobs


def is_current(build_dir: Path, job: Job, entry: ManifestEntry | None) -> bool:
    """Return whether the file of ``job`` matches its inputs and its manifest entry."""
    if entry is None or entry.inputs != job.inputs:
        return False
    return _file_hash(build_dir / (job.basename + SOUND_EXTENSION)) == entry.output


def _tone_job(code: str) -> Job:
    inputs = _hash_inputs({"generator": "sit", "version": TONE_VERSION, "code": code})
    return Job(sit_sound(code), inputs, f"SIT {code}", lambda: sit_wav(code))


def _speech_job(config: Config, prompt: str) -> Job:
    from screener.sounds.convert import synthesise

    text = config.prompt_text(prompt)
    voice = config.sounds.voice
    inputs = _hash_inputs(
        {
            "generator": "espeak-ng",
            "version": SPEECH_VERSION,
            "voice": voice,
            "text": text,
        }
    )
    return Job(
        prompt_sound(prompt),
        inputs,
        f"espeak-ng {voice}: {text}",
        lambda: synthesise(text, voice),
    )


def _recording_job(prompt: str, recording: Path) -> Job:
    from screener.sounds.convert import prompt_wav

    try:
        content = _hash_recording(recording)
    except FileNotFoundError:
        raise SoundsError(
            f"recording for prompt {prompt!r} not found: {str(recording)!r}"
        ) from None
    except OSError as exc:
        raise SoundsError(
            f"failed to read recording {str(recording)!r}: {exc.strerror}"
        ) from exc
    inputs = _hash_inputs(
        {"generator": "recording", "version": RECORDING_VERSION, "sha256": content}
    )
    return Job(
        prompt_sound(prompt),
        inputs,
        f"recording {recording}",
        lambda: prompt_wav(recording),
    )


def _hash_recording(recording: Path) -> str:
    """Hash a recording in chunks, refusing anything but a regular file.

    A FIFO would block the build for ever and a device such as /dev/zero
    never ends, so both are rejected before a byte is read.
    """
    status = recording.stat()
    if not stat.S_ISREG(status.st_mode):
        raise SoundsError(f"recording {str(recording)!r} is not a regular file")
    if status.st_size > MAX_RECORDING_BYTES:
        raise SoundsError(
            f"recording {str(recording)!r} is over {MAX_RECORDING_BYTES} bytes"
        )
    digest = hashlib.sha256()
    with recording.open("rb") as file:
        while chunk := file.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_inputs(inputs: dict[str, object]) -> str:
    encoded = json.dumps(inputs, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _render_all(
    build_dir: Path, pending: list[tuple[Job, Callable[[], bytes]]]
) -> dict[str, str]:
    """Render every pending sound to a temporary file, then rename them all.

    Returns the content hash of each written file, by basename.
    """
    temporaries: list[tuple[Path, Path]] = []
    hashes: dict[str, str] = {}
    try:
        for job, render in pending:
            data = render()
            target = build_dir / (job.basename + SOUND_EXTENSION)
            temporaries.append((_write_temporary(target, data), target))
            hashes[job.basename] = hashlib.sha256(data).hexdigest()
    except BaseException:
        for temporary, _target in temporaries:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, target in temporaries:
        os.replace(temporary, target)
    return hashes


def _write_temporary(target: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file beside ``target`` and return its path."""
    try:
        handle, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise SoundsError(
            f"failed to write in {str(target.parent)!r}: {exc.strerror}"
        ) from exc
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.chmod(FILE_MODE)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SoundsError(f"failed to write {str(target)!r}: {exc.strerror}") from exc
    return temporary


def _make_dir(build_dir: Path) -> None:
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SoundsError(
            f"failed to create sound directory {str(build_dir)!r}: {exc.strerror}"
        ) from exc


def read_manifest(build_dir: Path) -> dict[str, ManifestEntry]:
    """Return the manifest entries in ``build_dir``, or none if it has no manifest.

    An unreadable or invalid manifest is logged and treated as empty, which
    makes the next build remake every file.
    """
    path = build_dir / MANIFEST_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("ignoring invalid sound manifest %s: %s", path, exc)
        return {}
    try:
        if document["format"] != MANIFEST_FORMAT:
            log.warning("ignoring sound manifest %s of another format", path)
            return {}
        return {
            name: ManifestEntry(
                inputs=str(entry["inputs"]),
                output=str(entry["output"]),
                description=str(entry["description"]),
            )
            for name, entry in document["sounds"].items()
        }
    except (KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring invalid sound manifest %s: %r", path, exc)
        return {}


def write_manifest(build_dir: Path, entries: dict[str, ManifestEntry]) -> None:
    """Replace the manifest in ``build_dir`` atomically with ``entries``."""
    document = {
        "format": MANIFEST_FORMAT,
        "sounds": {
            name: {
                "description": entry.description,
                "inputs": entry.inputs,
                "output": entry.output,
            }
            for name, entry in sorted(entries.items())
        },
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    path = build_dir / MANIFEST_NAME
    os.replace(_write_temporary(path, text.encode("utf-8")), path)


def _defaults_manifest(build_dir: Path) -> dict[str, ManifestEntry]:
    if _same_dir(build_dir, DEFAULTS_DIR):
        return {}
    return read_manifest(DEFAULTS_DIR)


def _same_dir(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False
