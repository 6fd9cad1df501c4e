"""Handset feature codes: change the lists for the last caller from a handset.

The dialplan context ``[screener-features]`` (extensions_screener.conf) maps

    *30  block-last    put the last caller on the block list
    *31  unblock-last  take the last caller off the block list
    *32  allow-last    put the last caller on the allow list

and runs AGI with the feature name: as the FastAGI script path
(``agi://127.0.0.1:4573/feature/block-last``) or, for classic AGI, as the
first argument (``feature/block-last``). The last caller is the latest logged
call that came with a number, so withheld callers are skipped. Each feature
answers, changes the list, plays a short confirmation and hangs up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from screener.agi.protocol import Environment
from screener.channel import Channel
from screener.config import Config
from screener.errors import (
    ChannelHungUp,
    CommandFailed,
    ListError,
    ProtocolError,
    ScreenerError,
)
from screener.lazylog import get_logger
from screener.lists import FEATURE_PREFIX
from screener.lists.rules import EntryKind, ListEntry, ListName
from screener.sounds.names import prompt_sound

if TYPE_CHECKING:
    from screener.storage import Store

# Lazy, so that under classic AGI the first line logged sets up the handler.
log = get_logger(__name__)


@dataclass(frozen=True)
class Feature:
    """One feature code: its name, dial code and confirmation prompt."""

    name: str
    code: str
    prompt: str


FEATURES = {
    feature.name: feature
    for feature in (
        Feature("block-last", "*30", "blocked_last"),
        Feature("unblock-last", "*31", "unblocked_last"),
        Feature("allow-last", "*32", "allowed_last"),
    )
}


def feature_name(environment: Environment) -> str | None:
    """Return the feature an AGI session asks for, or None for a screened call.

    FastAGI carries it in the script path, classic AGI in the first argument.
    """
    script = environment.get("network_script").strip("/")
    if not script:
        script = environment.get("arg_1").strip("/")
    if script.startswith(FEATURE_PREFIX):
        return script.removeprefix(FEATURE_PREFIX)
    return None


def apply_feature(store: Store, name: str) -> str:
    """Change the lists for the last caller; return the prompt to confirm with.

    Raises ListError for an unknown feature name.
    """
    # Imported here so that the classic AGI script, which only needs
    # feature_name for a screened call, does not load the database module.
    from screener.lists import store as list_store

    feature = FEATURES.get(name)
    if feature is None:
        valid = ", ".join(FEATURES)
        raise ListError(f"unknown feature {name!r}; valid: {valid}")
    call = list_store.last_caller(store)
    if call is None or call.number is None:
        log.info("feature %s: no logged call with a number", name)
        return "no_last_caller"
    number = call.number
    day = datetime.now().date().isoformat()
    if name == "block-last":
        # Allow wins over block, so an exact allow entry would make the block
        # useless. An allow prefix or name pattern can still win.
        list_store.remove_entry(store, ListName.ALLOW, EntryKind.NUMBER, number)
        entry = ListEntry(
            ListName.BLOCK,
            EntryKind.NUMBER,
            number,
            note=f"blocked from a handset on {day}",
            source="handset",
        )
        list_store.add_entry(store, entry)
    elif name == "unblock-last":
        # NOTE: a block prefix or name pattern that also matches still blocks
        # the number; only the exact entry is removed.
        list_store.remove_entry(store, ListName.BLOCK, EntryKind.NUMBER, number)
    else:
        list_store.remove_entry(store, ListName.BLOCK, EntryKind.NUMBER, number)
        entry = ListEntry(
            ListName.ALLOW,
            EntryKind.NUMBER,
            number,
            note=f"allowed from a handset on {day}",
            source="handset",
        )
        list_store.add_entry(store, entry)
    log.info("feature %s applied to %s (call %s)", name, number, call.uniqueid)
    return feature.prompt


class FeatureHandler:
    """Runs feature sessions against one open database."""

    def __init__(self, store: Store, config: Config) -> None:
        self._store = store
        self._config = config

    async def run(self, name: str, channel: Channel, environment: Environment) -> None:
        """Answer, apply feature ``name``, play its confirmation and hang up.

        Never raises: a failure is logged and the handset hears no
        confirmation, which tells the user that nothing changed.
        """
        tag = environment.uniqueid or environment.channel or "-"
        try:
            await channel.answer()
            prompt = apply_feature(self._store, name)
            sound = f"{self._config.sounds.asterisk_dir}/{prompt_sound(prompt)}"
            await channel.stream_file(sound)
            await channel.hangup()
        except ChannelHungUp:
            log.info("[%s] handset hung up during feature %s", tag, name)
        except (ProtocolError, CommandFailed, TimeoutError, ScreenerError) as exc:
            log.error("[%s] feature %s failed: %s", tag, name, exc)
        except Exception:
            log.exception("[%s] feature %s crashed", tag, name)
