"""Classic AGI: the same call flow as a process Asterisk starts per call.

Name it in the dialplan as ``AGI(screener-agi)``. pyst2 reads the environment
from stdin and speaks the protocol on stdout. Three pyst2 habits are worked
around. It copies the environment block (caller ID included) and every
command and reply to the stderr it is given, which Asterisk puts in its
console, so it gets a sink of its own. Its reads have no limits and loop at
end of file, so it reads stdin through :class:`AgiInput`, which applies
FastAGI's limits and hang-up rules. Its replies are dictionaries and
exceptions of its own, which :class:`Pyst2Channel` turns into Screener's
errors.

Heavy modules (pydub, aiosmtplib) are never imported here, so that the first
command reaches Asterisk as soon as possible. The allow and block lists decide
before the first command, so they are read before the call flow, through
sqlite3 alone and only the entries that could match this caller. The
database layer loads after the first command, to log the call.
"""

from __future__ import annotations

import io
import os
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Sequence

from screener import config as config_module
from screener.agi.protocol import (
    HANGUP_LINE,
    MAX_LINE_BYTES,
    MAX_USAGE_LINES,
    Environment,
    EnvironmentParser,
    Reply,
    Status,
    is_usage_continuation,
    parse_reply_line,
    quote,
)
from screener.errors import (
    ChannelHungUp,
    CommandFailed,
    ProtocolError,
    ScreenerError,
)
from screener.lazylog import configure_on_first_use, get_logger
from screener.lists import FEATURE_PREFIX
from screener.lists.lookup import OneCallLists, open_lookup
from screener.session import run_session

# typing is not imported at run time, for classic AGI's start-up (see
# screener.record). mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, NoReturn, TypeVar

    from screener.records import CallRecord

    T = TypeVar("T")

# A lazy logger: classic AGI imports this module before its first command.
log = get_logger(__name__)

# pyst2 reports a dead channel (511) as AGIUnknownError(code, message).
DEAD_CHANNEL_CODE = 511


class AgiInput:
    """The stdin that pyst2 reads, with the limits and rules of FastAGI.

    pyst2 0.5.1 calls ``readline()`` with no limit on the length or number of
    lines. At end of file it parses the empty string (ValueError), and it
    reads a ``520-`` usage text until a line starting with ``520`` arrives,
    which at end of file never happens, so it spins. Here every line is
    capped at MAX_LINE_BYTES and decoded as UTF-8 with replacement. End of
    file and Asterisk's ``HANGUP`` line raise ChannelHungUp. The environment
    block goes through FastAGI's parser, which bounds it, and a reply that
    pyst2 would mishandle raises ProtocolError or CommandFailed here. These
    exceptions pass through pyst2 unchanged, because it catches only OSError
    around its reads.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._parser: EnvironmentParser | None = EnvironmentParser()
        self._environment: Environment | None = None

    @property
    def environment(self) -> Environment:
        """The environment block, complete once pyst2's constructor returns."""
        if self._environment is None:
            raise RuntimeError("the AGI environment block has not been read yet")
        return self._environment

    def read_environment(self) -> Environment:
        """Read the environment block up to its blank line, if not yet read."""
        while self._environment is None:
            self.readline()
        return self._environment

    def readline(self) -> str:
        """Read one line for pyst2, checked as FastAGI checks it."""
        line = self._read_line()
        if self._parser is not None:
            self._environment = self._parser.feed(line)
            if self._environment is not None:
                self._parser = None
        else:
            self._check_reply(line)
        return line + "\n"

    def _read_line(self) -> str:
        raw = self._stream.readline(MAX_LINE_BYTES + 1)
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE_BYTES:
                raise ProtocolError(f"line longer than {MAX_LINE_BYTES} bytes")
            # A line cut short by end of file is dropped, as FastAGI drops it.
            raise ChannelHungUp("end of file on stdin")
        # Asterisk passes caller names on in whatever bytes the network sent,
        # such as Latin-1, so invalid UTF-8 becomes U+FFFD. Python's own stdin
        # decoding would raise, or in the C locale make surrogates, which
        # SQLite rejects.
        line = raw[:-1].decode("utf-8", "replace").rstrip("\r")
        if line == HANGUP_LINE:
            # Sent instead of SIGHUP when the dialplan sets AGISIGHUP=no.
            raise ChannelHungUp("Asterisk reported HANGUP")
        return line

    def _check_reply(self, line: str) -> None:
        """Raise for a first reply line that pyst2 would mishandle."""
        # pyst2 raises ValueError for a line without a status code, and the
        # session logs that as a crash of the call flow.
        reply = parse_reply_line(line)
        if reply.status is not Status.USAGE:
            return
        # pyst2 reads at least one more line after any 520 line. Asterisk's
        # res_agi.c sends a one-line "520 " reply for a command without usage
        # text, so pyst2 would wait for a line that never comes.
        if line.startswith("520-"):
            self._skip_usage()
        raise CommandFailed(f"Asterisk rejected the command syntax: {line!r}")

    def _skip_usage(self) -> None:
        for _ in range(MAX_USAGE_LINES):
            if not is_usage_continuation(self._read_line()):
                return
        raise ProtocolError(f"usage text exceeds {MAX_USAGE_LINES} lines")


class Pyst2Channel:
    """The Channel verbs on a pyst2 ``AGI`` object."""

    def __init__(self, agi: Any) -> None:
        self._agi = agi

    async def answer(self) -> None:
        """Answer the call."""
        self._call(self._agi.answer)

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play ``sound``; return the key that interrupted it, if any."""
        # pyst2's stream_file() leaves the file name unquoted, so a space in
        # it would split the argument, and its conversion of the result would
        # accept any code point as a key. Every argument here is quoted.
        response = self._call(
            self._agi.execute, "STREAM FILE", quote(sound), quote(escape_digits), 0
        )
        return self._key(response, f"STREAM FILE {sound!r}")

    async def wait_for_digit(self, seconds: float) -> str | None:
        """Wait up to ``seconds`` for a key."""
        milliseconds = max(1, round(seconds * 1000))
        response = self._call(self._agi.execute, "WAIT FOR DIGIT", milliseconds)
        return self._key(response, "WAIT FOR DIGIT")

    async def set_variable(self, name: str, value: str) -> None:
        """Set a channel variable."""
        # pyst2's set_variable() quotes without escaping '"' or '\\'.
        self._call(self._agi.execute, "SET VARIABLE", quote(name), quote(value))

    async def hangup(self) -> None:
        """Hang up the call."""
        self._call(self._agi.hangup)

    def _key(self, response: dict[str, tuple[str, str]], command: str) -> str | None:
        """Return the DTMF key in a digit command's result, checked as FastAGI does.

        pyst2 has already raised for -1. Any other negative result is a
        failure too, and a code that is not a DTMF key raises ProtocolError.
        """
        result = response["result"][0]
        reply = Reply(Status.SUCCESS, result=result, text=f"200 result={result}")
        if reply.result_int >= 0:
            return reply.digit()
        self._raise_for_minus_one(f"{command} failed: result={result}")

    def _raise_for_minus_one(self, message: str) -> NoReturn:
        """Raise ChannelHungUp if the call is gone, else CommandFailed.

        -1 means either a hang-up or a failure, such as a missing sound file.
        res_agi.c's command loop sends the reply first and SIGHUP on its next
        pass, so the flag alone can miss a hang-up. A status query settles
        it, as on FastAGI: on a dead channel Asterisk replies 511.
        """
        import contextlib

        from asterisk import agi as pyst2

        if not self._agi._got_sighup:
            # -1 from the query itself means no such channel, not a hang-up.
            with contextlib.suppress(pyst2.AGIAppError):
                self._call_checked(self._agi.execute, "CHANNEL STATUS")
        if self._agi._got_sighup:
            raise ChannelHungUp(f"hang-up: {message}")
        raise CommandFailed(message)

    def _call(self, method: Callable[..., T], *arguments: object) -> T:
        from asterisk import agi as pyst2

        try:
            return self._call_checked(method, *arguments)
        except pyst2.AGIAppError as exc:
            self._raise_for_minus_one(str(exc))

    def _call_checked(self, method: Callable[..., T], *arguments: object) -> T:
        """Call a pyst2 method, raising Screener's errors except for -1."""
        from asterisk import agi as pyst2

        try:
            return method(*arguments)
        except pyst2.AGIHangup as exc:
            raise ChannelHungUp(str(exc)) from exc
        except pyst2.AGIAppError:
            raise
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
    configure_on_first_use(_configure_logging)
    # The dialplan appends the feature after whatever SCREENER_AGI holds, so
    # it may follow the configuration path: look for it in every position.
    features = [item for item in arguments if item.startswith(FEATURE_PREFIX)]
    arguments = [item for item in arguments if not item.startswith(FEATURE_PREFIX)]
    feature = features[0].removeprefix(FEATURE_PREFIX) if features else None
    explicit = arguments[0] if arguments else None
    try:
        config = config_module.load_selected(explicit)
    except ScreenerError as exc:
        # Exit non-zero so that AGISTATUS is FAILURE and the dialplan fails open.
        log.error("screener-agi: %s", exc)
        return 1

    agi_input = AgiInput(sys.stdin.buffer)
    try:
        agi = _connect_pyst2(agi_input)
    except (ChannelHungUp, ProtocolError) as exc:
        log.warning("screener-agi: could not read the AGI environment block: %s", exc)
        return 1
    environment = agi_input.environment
    if feature is not None:
        return _run_feature(feature, Pyst2Channel(agi), environment, config)
    connection = _open_lookup(config)
    lists = None if connection is None else OneCallLists(connection)
    try:
        session = run_session(
            Pyst2Channel(agi), environment, config, _record_call(config), lists
        )
        _run_to_completion(session)
    finally:
        if connection is not None:
            connection.close()
    return 0


def _connect_pyst2(agi_input: AgiInput) -> Any:
    """Construct pyst2's ``AGI`` on ``agi_input``; it reads the environment block."""
    from asterisk import agi as pyst2

    class ScreenerAgi(pyst2.AGI):  # type: ignore[misc]
        def _get_agi_env(self) -> None:
            # pyst2's own reader ends with pprint.pformat of the block, for its
            # debug copy. On Python 3.14 that first imports dataclasses and
            # inspect, an estimated 9 ms per call (python -X importtime), for a
            # copy that is dropped. If a later pyst2 no longer calls this
            # method, it reads the block through AgiInput.readline() itself,
            # with the same checks.
            self.env = dict(agi_input.read_environment().variables)

    # pyst2 writes its debug copy of the arguments, commands and replies to
    # this stderr. The copy contains caller ID, so it is dropped.
    return ScreenerAgi(stdin=agi_input, stderr=_Discard())


def _open_lookup(config: config_module.Config) -> sqlite3.Connection | None:
    """Open the database for the lists, or return None so the menu still runs."""
    try:
        return open_lookup(config.database.path)
    except sqlite3.Error as exc:
        path = str(config.database.path)
        log.error(
            "screener-agi: no allow or block lists for this call:"
            " cannot open database %r: %s",
            path,
            exc,
        )
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


def _record_call(config: config_module.Config) -> Callable[[CallRecord], None]:
    def record(call: CallRecord) -> None:
        # Asterisk goes on with the dialplan (ringing the handsets, say) once
        # the script's stdout closes, so the call must not wait for the write.
        _close_stdout()
        # The database layer loads only now, after the call: it creates and
        # migrates the database if needed.
        from screener.lists.store import record_and_learn
        from screener.storage import open_store

        store = open_store(config.database.path)
        try:
            record_and_learn(store, call, config)
        finally:
            store.close()

    return record


def _close_stdout() -> None:
    """Close the pipe to Asterisk, leaving /dev/null in its place."""
    import contextlib

    # OSError: Asterisk has closed its end already, so the call is over.
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):
        return  # Not a file, as when a test captures stdout.
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _configure_logging() -> None:
    # stdout belongs to the AGI protocol; log lines go to stderr, which
    # Asterisk shows on its console with the channel name.
    import logging

    level = os.environ.get("SCREENER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="screener-agi %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    sys.exit(main())
