"""The error tree shared by every layer of Screener.

Peer faults (Asterisk or a FastAGI client sent something wrong) and local faults
(bad configuration, misuse of an API) are separate branches, so a caller can tell
"the other side misbehaved" from "we are set up wrong".
"""


class ScreenerError(Exception):
    """Base class of every error Screener raises on purpose."""


class ConfigError(ScreenerError):
    """The configuration file is missing, unreadable or has an invalid value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class ProtocolError(ScreenerError):
    """The AGI peer sent bytes that do not follow the protocol."""


class ChannelHungUp(ScreenerError):
    """The caller hung up, or Asterisk reported the channel dead (511)."""


class CommandFailed(ScreenerError):
    """An AGI command was rejected (510, 520) or returned failure (-1)."""


class InvalidArgument(ScreenerError, ValueError):
    """A value we were about to send contains bytes that would break the framing."""


class SoundsError(ScreenerError):
    """A sound could not be built, converted or found."""


class StorageError(ScreenerError):
    """The call log database could not be opened or written."""


class ListError(ScreenerError):
    """An allow or block list entry, or a file of them, is invalid."""


class MailError(ScreenerError):
    """A report could not be sent, or the mail settings cannot be used."""


class UsageError(ScreenerError):
    """A command-line argument is invalid."""
