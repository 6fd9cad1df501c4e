"""Building the sounds: names, prompts, recordings, the manifest and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from screener.config import Config, parse
from screener.errors import SoundsError
from screener.sounds import (
    all_sounds,
    build,
    check,
    prompt_sound,
    required_sounds,
    sit_sound,
    sound_prompt,
)
from screener.sounds.builder import MANIFEST_NAME
from tests.audio_analysis import (
    active_level_dbfs,
    dominant_frequency,
    find_tones,
    peak_dbfs,
    read_wav,
)

SOUNDS_DIR = Path(__file__).resolve().parents[1] / "sounds"
PROMPT_FILES = [
    "main-menu",
    "second-menu",
    "decoy",
    "goodbye",
    "not-in-service",
    "blocked-last",
    "unblocked-last",
    "allowed-last",
    "no-last-caller",
]
SIT_FILES = ["sit-ic", "sit-vc", "sit-ro", "sit-nc"]
COMMITTED_WAVS = sorted(SOUNDS_DIR.glob("*.wav"))


def make_config(build_dir: Path, **tables: dict[str, Any]) -> Config:
    document: dict[str, Any] = {"sounds": {"build_dir": str(build_dir)}}
    for name, table in tables.items():
        document.setdefault(name, {}).update(table)
    return parse(document, base_dir=build_dir.parent)


def snapshot(directory: Path) -> dict[str, str]:
    """Return the content hash of every file in ``directory``, by name."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


def sound_bounds(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """Return the seconds before the first and after the last sound sample.

    A sample counts as sound when it is within 40 dB of the peak, as the trim
    in the build measures silence relative to the peak too.
    """
    loud = np.abs(samples) > np.max(np.abs(samples)) * 10 ** (-40 / 20)
    return int(np.argmax(loud)) / rate, int(np.argmax(loud[::-1])) / rate


def wav_format(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path), "rb") as reader:
        return reader.getframerate(), reader.getnchannels(), reader.getsampwidth()


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A build directory filled from the default configuration."""
    build_dir = tmp_path / "built"
    build(make_config(build_dir))
    return build_dir


@pytest.fixture
def path_without_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set PATH to a folder that has ffmpeg but no espeak-ng."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    (bin_dir / "ffmpeg").symlink_to(ffmpeg)
    monkeypatch.setenv("PATH", str(bin_dir))


# Names.


@pytest.mark.parametrize(
    ("prompt", "basename"),
    [
        ("main_menu", "main-menu"),
        ("second_menu", "second-menu"),
        ("decoy", "decoy"),
        ("goodbye", "goodbye"),
        ("not_in_service", "not-in-service"),
    ],
)
def test_prompt_basename_round_trip(prompt: str, basename: str) -> None:
    assert prompt_sound(prompt) == basename
    assert sound_prompt(basename) == prompt


def test_unknown_prompt_rejected() -> None:
    with pytest.raises(SoundsError, match="valid: main_menu"):
        prompt_sound("welcome")


def test_non_prompt_basename_rejected() -> None:
    with pytest.raises(SoundsError, match="not a prompt sound"):
        sound_prompt("sit-ic")


def test_sit_basename_is_lower_case() -> None:
    assert sit_sound("VC") == "sit-vc"


def test_unknown_sit_code_lists_valid() -> None:
    with pytest.raises(SoundsError, match="valid: IC, VC, RO, NC"):
        sit_sound("ZZ")


def test_required_sounds_follow_sit_code(tmp_path: Path) -> None:
    config = make_config(tmp_path, menu={"sit_code": "RO"})
    assert required_sounds(config) == ["sit-ro", *PROMPT_FILES]


def test_build_writes_every_sound() -> None:
    assert all_sounds() == [*SIT_FILES, *PROMPT_FILES]


def test_import_does_not_load_pydub() -> None:
    code = "import sys, screener.sounds; print('pydub' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# The committed sounds.


def test_every_sound_committed() -> None:
    names = {path.stem for path in COMMITTED_WAVS}
    assert names == set(all_sounds())


@pytest.mark.parametrize("path", COMMITTED_WAVS, ids=lambda path: path.name)
def test_committed_file_is_8khz_mono_16bit(path: Path) -> None:
    assert wav_format(path) == (8000, 1, 2)


def test_committed_sounds_pass_check() -> None:
    assert check(make_config(SOUNDS_DIR)) == []


def test_committed_sounds_match_manifest() -> None:
    manifest = json.loads((SOUNDS_DIR / MANIFEST_NAME).read_text())
    for name, entry in manifest["sounds"].items():
        content = (SOUNDS_DIR / f"{name}.wav").read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["output"], name


def test_every_required_sound_committed() -> None:
    missing = [
        name
        for name in required_sounds(Config())
        if not (SOUNDS_DIR / f"{name}.wav").is_file()
    ]
    assert missing == []


@pytest.mark.parametrize("name", PROMPT_FILES)
def test_prompt_peak_below_minus_3_dbfs(name: str) -> None:
    samples, _rate = read_wav(SOUNDS_DIR / f"{name}.wav")
    assert peak_dbfs(samples) <= -3.0


@pytest.mark.parametrize("name", PROMPT_FILES)
def test_prompt_louder_than_tones(name: str) -> None:
    speech, rate = read_wav(SOUNDS_DIR / f"{name}.wav")
    tones, _rate = read_wav(SOUNDS_DIR / "sit-ic.wav")
    tone_level = find_tones(tones, rate)[0].level_dbfs
    assert active_level_dbfs(speech, rate) >= tone_level + 2.0


@pytest.mark.parametrize("name", PROMPT_FILES)
def test_prompt_level_is_minus_20_dbm0(name: str) -> None:
    speech, rate = read_wav(SOUNDS_DIR / f"{name}.wav")
    assert abs(active_level_dbfs(speech, rate) - (-20.0 - 3.17)) < 1.0


@pytest.mark.parametrize("name", PROMPT_FILES)
def test_prompt_starts_within_20_ms(name: str) -> None:
    samples, rate = read_wav(SOUNDS_DIR / f"{name}.wav")
    assert sound_bounds(samples, rate)[0] <= 0.020


@pytest.mark.parametrize("name", PROMPT_FILES)
def test_prompt_ends_within_20_ms(name: str) -> None:
    samples, rate = read_wav(SOUNDS_DIR / f"{name}.wav")
    assert sound_bounds(samples, rate)[1] <= 0.020


# Building and rebuilding.


def test_fresh_build_copies_defaults(tmp_path: Path) -> None:
    report = build(make_config(tmp_path / "built"))
    assert report.copied == all_sounds()


def test_fresh_build_matches_committed(built: Path) -> None:
    assert snapshot(built) == snapshot(SOUNDS_DIR)


def test_second_build_is_up_to_date(built: Path) -> None:
    report = build(make_config(built))
    assert report.up_to_date == all_sounds()


def test_forced_build_remakes_everything(built: Path) -> None:
    report = build(make_config(built), force=True)
    assert report.built == all_sounds()


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build directory made from scratch, without the committed defaults."""
    build_dir = tmp_path_factory.mktemp("rebuilt")
    build(make_config(build_dir), force=True)
    return build_dir


@pytest.mark.parametrize("name", all_sounds())
def test_forced_build_matches_defaults_length(rebuilt: Path, name: str) -> None:
    # Lengths, not bytes: another espeak-ng or ffmpeg release may differ in
    # the last bits but must not change the words spoken.
    rebuilt_samples, rate = read_wav(rebuilt / f"{name}.wav")
    committed, _rate = read_wav(SOUNDS_DIR / f"{name}.wav")
    assert abs(len(rebuilt_samples) - len(committed)) / rate < 0.1


def test_changed_decoy_rebuilds_two_prompts(built: Path) -> None:
    report = build(make_config(built, names={"decoy": "Bartholomew"}))
    assert report.built == ["second-menu", "decoy"]
    assert report.copied == []
    unchanged = [name for name in PROMPT_FILES if name not in report.built]
    assert report.up_to_date == [*SIT_FILES, *unchanged]


def test_changed_decoy_keeps_other_files(built: Path) -> None:
    before = snapshot(built)
    mtimes = {path.name: path.stat().st_mtime_ns for path in built.glob("*.wav")}
    build(make_config(built, names={"decoy": "Bartholomew"}))
    after = snapshot(built)
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["decoy.wav", "manifest.json", "second-menu.wav"]
    assert built.joinpath("goodbye.wav").stat().st_mtime_ns == mtimes["goodbye.wav"]


def test_changed_voice_rebuilds_every_prompt(built: Path) -> None:
    report = build(make_config(built, sounds={"voice": "en-gb"}))
    assert report.built == PROMPT_FILES


def test_deleted_file_rebuilt(built: Path) -> None:
    (built / "goodbye.wav").unlink()
    report = build(make_config(built))
    assert report.changed == ["goodbye"]


def test_altered_file_rebuilt(built: Path) -> None:
    (built / "sit-ic.wav").write_bytes(b"RIFF")
    report = build(make_config(built))
    assert report.changed == ["sit-ic"]


def test_build_leaves_no_temporary_files(built: Path) -> None:
    build(make_config(built, names={"decoy": "Bartholomew"}))
    assert [path.name for path in built.glob(".*")] == []


def test_built_files_readable_by_others(built: Path) -> None:
    # Asterisk reads the files as its own user.
    assert (built / "decoy.wav").stat().st_mode & 0o777 == 0o644


def test_unknown_voice_named_in_error(built: Path) -> None:
    with pytest.raises(SoundsError, match="'xx-nosuchvoice'"):
        build(make_config(built, sounds={"voice": "xx-nosuchvoice"}))


# User recordings.


@pytest.fixture
def stereo_mp3(tmp_path: Path) -> Path:
    """A 44.1 kHz stereo MP3: half a second of silence, then 1 s of 1 kHz."""
    from pydub import AudioSegment
    from pydub.generators import Sine

    silence = AudioSegment.silent(duration=500, frame_rate=44100)
    beep = Sine(1000, sample_rate=44100).to_audio_segment(duration=1000, volume=-6)
    mono = (silence + beep).set_sample_width(2)
    stereo = AudioSegment.from_mono_audiosegments(mono, mono)
    path = tmp_path / "my goodbye.mp3"
    stereo.export(str(path), format="mp3", bitrate="128k")
    return path


@pytest.fixture
def converted(built: Path, stereo_mp3: Path) -> Path:
    build(make_config(built, prompts={"recordings": {"goodbye": str(stereo_mp3)}}))
    return built / "goodbye.wav"


def test_recording_input_is_stereo_44khz(stereo_mp3: Path) -> None:
    from pydub import AudioSegment

    source = AudioSegment.from_file(str(stereo_mp3))
    assert (source.frame_rate, source.channels) == (44100, 2)


def test_recording_converted_to_8khz_mono(converted: Path) -> None:
    assert wav_format(converted) == (8000, 1, 2)


def test_recording_keeps_tone_frequency(converted: Path) -> None:
    samples, rate = read_wav(converted)
    frequency = dominant_frequency(samples, rate)
    assert abs(frequency / 1000 - 1) <= 0.002, f"{frequency:.2f} Hz"


def test_recording_leading_silence_trimmed(converted: Path) -> None:
    samples, rate = read_wav(converted)
    assert sound_bounds(samples, rate)[0] <= 0.020


def test_recording_keeps_its_length(converted: Path) -> None:
    samples, rate = read_wav(converted)
    assert abs(len(samples) / rate - 1.0) < 0.05


def test_recording_peak_below_full_scale(converted: Path) -> None:
    samples, _rate = read_wav(converted)
    assert peak_dbfs(samples) <= -3.0


def test_recording_rebuilt_when_changed(
    built: Path, stereo_mp3: Path, converted: Path
) -> None:
    stereo_mp3.write_bytes(stereo_mp3.read_bytes()[:-2000])
    config = make_config(built, prompts={"recordings": {"goodbye": str(stereo_mp3)}})
    assert build(config).built == ["goodbye"]


# Bad input.


def test_corrupt_recording_named_in_error(built: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.mp3"
    corrupt.write_bytes(b"ID3\x03\x00" + bytes(range(256)) * 8)
    config = make_config(built, prompts={"recordings": {"goodbye": str(corrupt)}})
    with pytest.raises(SoundsError, match=r"broken\.mp3"):
        build(config)


def test_corrupt_recording_overwrites_nothing(built: Path, tmp_path: Path) -> None:
    before = snapshot(built)
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    config = make_config(
        built,
        names={"decoy": "Bartholomew"},
        prompts={"recordings": {"goodbye": str(corrupt)}},
    )
    with pytest.raises(SoundsError):
        build(config)
    assert snapshot(built) == before


def test_missing_recording_named_in_error(built: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.ogg"
    config = make_config(built, prompts={"recordings": {"decoy": str(missing)}})
    with pytest.raises(SoundsError, match=r"nowhere\.ogg"):
        build(config)


def test_silent_recording_rejected(built: Path, tmp_path: Path) -> None:
    from pydub import AudioSegment

    silent = tmp_path / "silent.wav"
    AudioSegment.silent(duration=500, frame_rate=16000).export(str(silent), "wav")
    config = make_config(built, prompts={"recordings": {"decoy": str(silent)}})
    with pytest.raises(SoundsError, match="only silence"):
        build(config)


@pytest.mark.usefixtures("path_without_espeak")
def test_missing_espeak_gives_install_hint(built: Path) -> None:
    with pytest.raises(SoundsError, match="apt-get install espeak-ng"):
        build(make_config(built, names={"decoy": "Bartholomew"}))


def test_missing_espeak_overwrites_nothing(
    built: Path, path_without_espeak: None
) -> None:
    before = snapshot(built)
    committed = snapshot(SOUNDS_DIR)
    with pytest.raises(SoundsError):
        build(make_config(built, names={"decoy": "Bartholomew"}))
    assert snapshot(built) == before
    assert snapshot(SOUNDS_DIR) == committed


@pytest.mark.usefixtures("path_without_espeak")
def test_defaults_build_without_espeak(tmp_path: Path) -> None:
    report = build(make_config(tmp_path / "built"))
    assert report.copied == all_sounds()


# Checking.


def test_check_passes_after_build(built: Path) -> None:
    assert check(make_config(built)) == []


def test_check_reports_missing_file(built: Path) -> None:
    (built / "decoy.wav").unlink()
    assert check(make_config(built)) == [
        f"{str(built / 'decoy.wav')!r} is missing; build the sounds"
    ]


def test_check_reports_wrong_rate(built: Path) -> None:
    with wave.open(str(built / "goodbye.wav"), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(44100)
        writer.writeframes(bytes(882))
    problems = check(make_config(built))
    assert any("sample rate 44100 Hz, expected 8000 Hz" in p for p in problems)


def test_check_reports_stale_prompt(built: Path) -> None:
    problems = check(make_config(built, names={"owner": "Beatrice"}))
    assert problems == [
        f"{str(built / 'main-menu.wav')!r} is out of date with the configuration; "
        "rebuild the sounds"
    ]


def test_check_ignores_unplayed_sit_codes(built: Path) -> None:
    (built / "sit-nc.wav").unlink()
    assert check(make_config(built)) == []


def test_fifo_recording_rejected_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "menu.fifo"
    os.mkfifo(fifo)
    config = parse(
        {
            "sounds": {"build_dir": str(tmp_path / "built")},
            "prompts": {"recordings": {"main_menu": str(fifo)}},
        },
        base_dir=tmp_path,
    )
    with pytest.raises(SoundsError, match="not a regular file"):
        build(config)
