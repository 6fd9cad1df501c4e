"""Classic AGI: the same call flow as a process Asterisk starts per call.

Name it in the dialplan as ``AGI(screener-agi)``. pyst2 reads the environment
from stdin and speaks the protocol on stdout. Two pyst2 habits are worked
around: it copies the environment block (caller ID included) and every
command to the stderr it is given, which Asterisk puts in its console, so it
gets a sink of its own; and its replies are dictionaries and exceptions of its
own, which :class:`Pyst2Channel` turns into Screener's errors.

Heavy modules (pydub, aiosmtplib) are never imported here, so that the first
command reaches Asterisk as soon as possible. The database is opened before
the call flow, because the allow and block lists decide before the menu, and
only the list entries that could match this caller are read.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from screener import config as config_module
from screener.agi.protocol import Environment, check_argument
from screener.errors import ChannelHungUp, CommandFailed, ScreenerError
from screener.lists.features import FEATURE_PREFIX
from screener.records import CallRecord
from screener.session import run_session

if TYPE_CHECKING:
    from screener.storage import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

# pyst2 reports a dead channel (511) as AGIUnknownError(code, message).
DEAD_CHANNEL_CODE = 511


class Pyst2Channel:
    """The Channel verbs on a pyst2 ``AGI`` object."""

    def __init__(self, agi: Any) -> None:
        self._agi = agi

    async def answer(self) -> None:
        """Answer the call."""
        self._call(self._agi.answer)

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play ``sound``; return the key that interrupted it, if any."""
        check_argument(sound)
        key: str = self._call(self._agi.stream_file, sound, escape_digits)
        return key or None

    async def wait_for_digit(self, seconds: float) -> str | None:
        """Wait up to ``seconds`` for a key."""
        milliseconds = max(1, round(seconds * 1000))
        key: str = self._call(self._agi.wait_for_digit, milliseconds)
        return key or None

    async def set_variable(self, name: str, value: str) -> None:
        """Set a channel variable."""
        check_argument(name)
        check_argument(value)
        self._call(self._agi.set_variable, name, value)

    async def hangup(self) -> None:
        """Hang up the call."""
        self._call(self._agi.hangup)

    def _call(self, method: Callable[..., T], *arguments: object) -> T:
        from asterisk import agi as pyst2

        try:
            return method(*arguments)
        except pyst2.AGIHangup as exc:
            raise ChannelHungUp(str(exc)) from exc
        except pyst2.AGIAppError as exc:
            # -1 means hang-up or failure; pyst2 has noted a SIGHUP if it was
            # a hang-up, because Asterisk signals before it replies.
            if self._agi._got_sighup:
                raise ChannelHungUp(str(exc)) from exc
            raise CommandFailed(str(exc)) from exc
        except pyst2.AGIUnknownError as exc:
            if exc.args and exc.args[0] == DEAD_CHANNEL_CODE:
                raise ChannelHungUp("channel is dead (511)") from exc
            raise CommandFailed(f"unexpected reply: {exc.args!r}") from exc
        except pyst2.AGIError as exc:
            raise CommandFailed(str(exc)) from exc
        except (BrokenPipeError, EOFError) as exc:
            raise ChannelHungUp(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run one screening session on stdin/stdout; return the exit status.

    The only argument, if given, is the configuration file, as in
    ``AGI(screener-agi,/etc/screener/screener.toml)``; otherwise
    $SCREENER_CONFIG or the default path is read. A handset feature code
    passes its feature as another argument, as in
    ``AGI(screener-agi,/etc/screener/screener.toml,feature/block-last)``.
    """
    arguments = sys.argv[1:] if argv is None else list(argv)
    _configure_logging()
    # The dialplan appends the feature after whatever SCREENER_AGI holds, so
    # it may follow the configuration path: look for it in every position.
    features = [item for item in arguments if item.startswith(FEATURE_PREFIX)]
    arguments = [item for item in arguments if not item.startswith(FEATURE_PREFIX)]
    feature = features[0].removeprefix(FEATURE_PREFIX) if features else None
    explicit = arguments[0] if arguments else None
    try:
        path = config_module.config_path(explicit)
        config = config_module.load(path, missing_ok=explicit is None)
    except ScreenerError as exc:
        # Exit non-zero so that AGISTATUS is FAILURE and the dialplan fails open.
        log.error("screener-agi: %s", exc)
        return 1

    from asterisk import agi as pyst2

    agi = pyst2.AGI(stderr=io.StringIO())
    environment = Environment(dict(agi.env))
    # pyst2 keeps its debug copy in that StringIO; drop it, it holds caller ID.
    agi.stderr = _Discard()
    if feature is not None:
        return _run_feature(feature, Pyst2Channel(agi), environment, config)
    store = _open_store(config)
    lists = None
    if store is not None:
        from screener.lists.store import OneCallLists

        lists = OneCallLists(store)
    try:
        session = run_session(
            Pyst2Channel(agi), environment, config, _recorder(config, store), lists
        )
        _run_to_completion(session)
    finally:
        if store is not None:
            store.close()
    return 0


def _open_store(config: config_module.Config) -> Store | None:
    """Open the call log for the lists, or return None so the menu still runs."""
    from screener.storage import open_store

    try:
        return open_store(config.database.path)
    except ScreenerError as exc:
        log.error("screener-agi: no allow or block lists for this call: %s", exc)
        return None


def _run_feature(
    feature: str,
    channel: Pyst2Channel,
    environment: Environment,
    config: config_module.Config,
) -> int:
    from screener.lists.features import FeatureHandler
    from screener.storage import open_store

    try:
        store = open_store(config.database.path)
    except ScreenerError as exc:
        log.error("screener-agi: feature %s: %s", feature, exc)
        return 1
    try:
        _run_to_completion(
            FeatureHandler(store, config).run(feature, channel, environment)
        )
    finally:
        store.close()
    return 0


def _run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends, without an event loop.

    Pyst2Channel's verbs block on stdin and await nothing, so the session
    finishes at its first ``send``. Importing asyncio for ``asyncio.run``
    would add about 40 ms to the start of every call.
    """
    try:
        coroutine.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coroutine.close()
    raise RuntimeError("the classic AGI session awaited an event loop object")


def _recorder(
    config: config_module.Config, store: Store | None
) -> Callable[[CallRecord], None]:
    def record(call: CallRecord) -> None:
        from screener.lists.store import record_and_learn
        from screener.storage import open_store

        if store is not None:
            record_and_learn(store, call, config)
            return
        # Opening failed before the call; the database may be back by now.
        late_store = open_store(config.database.path)
        try:
            record_and_learn(late_store, call, config)
        finally:
            late_store.close()

    return record


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _configure_logging() -> None:
    # stdout belongs to the AGI protocol; log lines go to stderr, which
    # Asterisk shows on its console with the channel name.
    level = os.environ.get("SCREENER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="screener-agi %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    sys.exit(main())
