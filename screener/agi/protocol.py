"""The AGI wire protocol, without any I/O.

Theory of operation: Asterisk opens a session by sending an environment block,
one ``agi_name: value`` line per variable, ended by a blank line. After that
the script sends one command per line and Asterisk answers each with a status
line such as ``200 result=49 (timeout) endpos=8000``. Classic AGI carries this
over stdin/stdout and FastAGI over a TCP connection; both transports feed
lines into the functions here and never parse anything themselves.

Reply shapes handled, from res/res_agi.c in Asterisk 22:

* ``200 result=<value> [(<data>)] [key=value ...]``: the command ran.
* ``100 result=0 Trying...``: an interim line some commands send before the
  real reply; the reader skips it.
* ``510 Invalid or unknown command``: a command Asterisk does not know.
* ``511 Command Not Permitted on a dead channel or intercept routine``.
* ``520-Invalid command syntax.  Proper usage follows:`` then usage lines and
  ``520 End of proper usage.``: a command with bad arguments.
* ``HANGUP``: sent on FastAGI (and classic AGI with ``AGISIGHUP=no``) when the
  caller hangs up; commands still get replies afterwards, mostly 511.

https://docs.asterisk.org/Configuration/Interfaces/Asterisk-Gateway-Interface-AGI/
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from screener.errors import InvalidArgument, ProtocolError
from screener.record import Record

# An environment block is about 25 short lines (~1 KiB). The cap stops a peer
# from making us buffer without end before the session even starts.
MAX_ENVIRONMENT_BYTES = 16 * 1024
MAX_ENVIRONMENT_LINES = 200
# A reply line is short except for long variable values; 8 KiB is far beyond
# any reply Screener asks for and bounds the read buffer.
MAX_LINE_BYTES = 8 * 1024
# Asterisk stops reading a 520 usage text after a few dozen lines; this cap
# guards against a peer that never sends the closing line.
MAX_USAGE_LINES = 100

HANGUP_LINE = "HANGUP"
# A to D are rare on phones but legal DTMF, so a reply carrying them is not a fault.
DTMF_DIGITS = "0123456789*#ABCD"


class Status(enum.IntEnum):
    """AGI reply status codes."""

    TRYING = 100
    SUCCESS = 200
    INVALID_COMMAND = 510
    DEAD_CHANNEL = 511
    USAGE = 520


class Reply(Record):
    """One parsed reply from Asterisk."""

    status: Status
    result: str = ""
    data: str | None = None
    fields: Mapping[str, str] = MappingProxyType({})
    text: str = ""

    @property
    def result_int(self) -> int:
        """Return ``result`` as an integer, raising ProtocolError if it is not."""
        try:
            return int(self.result)
        except ValueError:
            raise ProtocolError(f"non-numeric result in {self.text!r}") from None

    def digit(self) -> str | None:
        """Return the DTMF key a digit-returning command reports, or None.

        ``WAIT FOR DIGIT`` and ``STREAM FILE`` report the ASCII code of the key
        (49 for "1"), 0 for no key and -1 for failure or hang-up.
        """
        code = self.result_int
        if code <= 0:
            return None
        key = chr(code) if code < 128 else ""
        if not key or key not in DTMF_DIGITS:
            raise ProtocolError(f"result is not a DTMF key: {self.text!r}")
        return key


class Environment(Record):
    """The ``agi_*`` variables Asterisk sends at the start of a session."""

    variables: Mapping[str, str]

    def get(self, name: str, default: str = "") -> str:
        """Return ``agi_<name>``, or ``default`` when Asterisk did not send it."""
        return self.variables.get(f"agi_{name}", default)

    @property
    def uniqueid(self) -> str:
        """Return the channel's Asterisk uniqueid."""
        return self.get("uniqueid")

    @property
    def channel(self) -> str:
        """Return the channel name, such as ``DAHDI/1-1``."""
        return self.get("channel")

    @property
    def callerid(self) -> str:
        """Return the caller's number as received, "unknown" when absent."""
        return self.get("callerid")

    @property
    def calleridname(self) -> str:
        """Return the caller's name as received, "unknown" when absent."""
        return self.get("calleridname")


# C0 controls, DEL and C1 controls, each mapped to a space.
_CONTROL_TO_SPACE = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0))}


class EnvironmentParser:
    """Incremental parser of the environment block, bounded in size.

    Feed it one line at a time (without the newline); it returns the finished
    :class:`Environment` at the blank line, else None.
    """

    def __init__(self) -> None:
        self._variables: dict[str, str] = {}
        self._bytes = 0
        self._lines = 0

    def feed(self, line: str) -> Environment | None:
        """Take one line; return the environment once the blank line arrives."""
        self._count(line)
        if line == "":
            # Asterisk always names the channel. A block without it is not
            # from Asterisk, and would otherwise start a call of its own.
            if "agi_channel" not in self._variables:
                raise ProtocolError("environment block without agi_channel")
            return Environment(dict(self._variables))
        name, separator, value = line.partition(": ")
        if not separator or not name.startswith("agi_"):
            raise ProtocolError(f"invalid environment line: {line[:80]!r}")
        # Split at the first ": " only, because values such as agi_request
        # (agi://host/script?a=b: c) may contain the separator themselves.
        # Control characters become spaces, so that no value can rewrite a
        # terminal that shows the log (the uniqueid tags every log line).
        self._variables[name] = value.translate(_CONTROL_TO_SPACE)
        return None

    def _count(self, line: str) -> None:
        self._bytes += len(line) + 1
        self._lines += 1
        if self._bytes > MAX_ENVIRONMENT_BYTES:
            raise ProtocolError(
                f"environment block exceeds {MAX_ENVIRONMENT_BYTES} bytes"
            )
        if self._lines > MAX_ENVIRONMENT_LINES:
            raise ProtocolError(
                f"environment block exceeds {MAX_ENVIRONMENT_LINES} lines"
            )


def parse_environment(lines: Iterable[str]) -> Environment:
    """Parse a complete environment block given as lines."""
    parser = EnvironmentParser()
    for line in lines:
        environment = parser.feed(line)
        if environment is not None:
            return environment
    raise ProtocolError("environment block ended before its blank line")


_REPLY = re.compile(
    r"^(?P<status>\d{3})[ -](?:result=(?P<result>\S*)"
    r"(?: \((?P<data>.*)\))?(?P<fields>(?: \S+=\S*)*))?(?P<rest>.*)$"
)
_FIELD = re.compile(r"(\S+)=(\S*)")
# Distinct reply lines and command lines kept parsed or built. A session sees
# only a handful of each (the same sounds, the same digits), so a cache hit
# replaces a regex match or the quoting of every argument.
LINE_CACHE_SIZE = 512


# Sharing one Reply between calls is safe because Reply is frozen and nothing
# mutates its fields. Errors are not cached, so a bad line raises every time.
@functools.lru_cache(maxsize=LINE_CACHE_SIZE)
def parse_reply_line(line: str) -> Reply:
    """Parse a single status line; 520 usage texts are gathered by the reader."""
    match = _REPLY.match(line)
    if match is None:
        raise ProtocolError(f"invalid reply line: {line[:80]!r}")
    try:
        status = Status(int(match["status"]))
    except ValueError:
        raise ProtocolError(f"unknown reply status: {line[:80]!r}") from None
    fields = dict(_FIELD.findall(match["fields"] or ""))
    return Reply(
        status=status,
        result=match["result"] or "",
        data=match["data"],
        fields=fields,
        text=line,
    )


def is_usage_continuation(line: str) -> bool:
    """Tell whether ``line`` continues a ``520-`` usage text rather than ends it."""
    return not line.startswith("520 ")


def quote(argument: str) -> str:
    """Quote one command argument for the AGI command line.

    Asterisk splits arguments at spaces unless they are inside double quotes,
    and a backslash escapes the next character inside quotes. A newline would
    end the command early, so CR, LF and NUL are rejected outright.
    """
    check_argument(argument)
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def check_argument(argument: str) -> None:
    """Reject a value that would break AGI framing."""
    for forbidden in ("\r", "\n", "\0"):
        if forbidden in argument:
            raise InvalidArgument(f"AGI argument contains {forbidden!r}: {argument!r}")


# typed=True keeps True and 1 apart, which build different lines.
@functools.lru_cache(maxsize=LINE_CACHE_SIZE, typed=True)
def build_command(verb: str, *arguments: str | int) -> bytes:
    """Build one command line, such as ``STREAM FILE "sit-ic" "12" 0``."""
    check_argument(verb)
    parts = [verb]
    for argument in arguments:
        if isinstance(argument, int):
            parts.append(str(argument))
        else:
            parts.append(quote(argument))
    return (" ".join(parts) + "\n").encode("utf-8")
