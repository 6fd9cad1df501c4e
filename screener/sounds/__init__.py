"""The sounds Screener plays: the SIT tones and the spoken prompts.

``build`` writes them into ``config.sounds.build_dir``, ``check`` reports what
is missing or stale, and ``required_sounds`` lists the basenames the call flow
plays. pydub is imported only when a prompt is converted.
"""

from screener.sounds.build import BuildReport, build
from screener.sounds.check import check
from screener.sounds.names import (
    all_sounds,
    prompt_sound,
    required_sounds,
    sit_sound,
    sound_prompt,
)

__all__ = [
    "BuildReport",
    "all_sounds",
    "build",
    "check",
    "prompt_sound",
    "required_sounds",
    "sit_sound",
    "sound_prompt",
]
