"""Sound basenames shared by the builder and the call flow.

Asterisk plays a sound by its basename, without the extension, so these names
are the contract between the files in the build directory and the call flow.
This module imports nothing heavy, so the AGI start-up path can use it cheaply.
"""

from __future__ import annotations

from screener.config import PROMPT_NAMES, SIT_CODES, Config
from screener.errors import SoundsError

SOUND_EXTENSION = ".wav"
SIT_PREFIX = "sit-"


def prompt_sound(prompt: str) -> str:
    """Return the sound basename of ``prompt``: ``main_menu`` → ``main-menu``."""
    if prompt not in PROMPT_NAMES:
        raise SoundsError(
            f"unknown prompt {prompt!r}; valid: {', '.join(PROMPT_NAMES)}"
        )
    return prompt.replace("_", "-")


def sound_prompt(basename: str) -> str:
    """Return the prompt whose sound is ``basename``: ``main-menu`` → ``main_menu``."""
    prompt = basename.replace("-", "_")
    if prompt not in PROMPT_NAMES:
        valid = ", ".join(prompt_sound(name) for name in PROMPT_NAMES)
        raise SoundsError(f"{basename!r} is not a prompt sound; valid: {valid}")
    return prompt


def sit_sound(code: str) -> str:
    """Return the sound basename of the SIT ``code``: ``IC`` → ``sit-ic``."""
    if code not in SIT_CODES:
        raise SoundsError(f"unknown SIT code {code!r}; valid: {', '.join(SIT_CODES)}")
    return SIT_PREFIX + code.lower()


def prompt_sounds() -> list[str]:
    """Return the basenames of every prompt, in ``PROMPT_NAMES`` order."""
    return [prompt_sound(name) for name in PROMPT_NAMES]


def sit_sounds() -> list[str]:
    """Return the basenames of every SIT code's tone sequence."""
    return [sit_sound(code) for code in SIT_CODES]


def all_sounds() -> list[str]:
    """Return the basenames a build writes: every SIT code and every prompt."""
    return [*sit_sounds(), *prompt_sounds()]


def required_sounds(config: Config) -> list[str]:
    """Return the basenames the call flow plays with ``config``.

    That is the configured SIT code's tones and every prompt. The other three
    SIT codes are built too, so switching ``menu.sit_code`` needs no rebuild,
    but the call flow never plays them.
    """
    return [sit_sound(config.menu.sit_code), *prompt_sounds()]
