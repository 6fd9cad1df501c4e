"""The sounds Screener plays: the SIT tones and the spoken prompts.

``build`` writes them into ``config.sounds.build_dir``, ``check`` reports what
is missing or stale, and ``required_sounds`` lists the basenames the call flow
plays. pydub is imported only when a prompt is converted.

The call flow imports ``screener.sounds.names`` at every classic AGI start, and
Python runs this file first, so the builder and checker load only when used.
"""

from __future__ import annotations

import importlib

from screener.sounds.names import (
    all_sounds,
    prompt_sound,
    required_sounds,
    sit_sound,
    sound_prompt,
)

# typing is not imported at run time, for classic AGI's start-up (see
# screener.record). mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from screener.sounds.builder import BuildReport, build
    from screener.sounds.checker import check

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

_LAZY = {
    "BuildReport": "screener.sounds.builder",
    "build": "screener.sounds.builder",
    "check": "screener.sounds.checker",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'screener.sounds' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
