"""The SMTP password: read from a file or the environment, never logged.

The main configuration only names where the password is, so that the
configuration file can be world-readable and shown in bug reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from screener.config import Mail
from screener.errors import MailError


@dataclass(frozen=True)
class Secret:
    """A password and the setting it came from; its repr hides the value."""

    value: str
    source: str

    def __repr__(self) -> str:
        return f"Secret(value='***', source={self.source!r})"

    __str__ = __repr__


def load_password(mail: Mail) -> Secret | None:
    """Read the SMTP password, or return None when no login is configured.

    ``mail.password_file`` wins over the environment variable named by
    ``mail.password_env``. Raise MailError naming the setting when a login
    is configured but no password can be read.
    """
    if not mail.username:
        return None
    if mail.password_file is not None:
        source = f"mail.password_file ({str(mail.password_file)!r})"
        try:
            text = mail.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MailError(
                f"cannot read the SMTP password from {source}: {exc}"
            ) from exc
        # Editors add a final newline; a password never ends with one.
        password = text.rstrip("\r\n")
        if not password:
            raise MailError(f"the SMTP password file in {source} is empty")
        return Secret(password, source)
    source = f"${mail.password_env} (mail.password_env)"
    password = os.environ.get(mail.password_env, "")
    if not password:
        raise MailError(
            f"mail.username is set but no SMTP password was found: set {source}"
            " or mail.password_file"
        )
    return Secret(password, source)
