"""Screener's configuration: one TOML file, validated into frozen records.

Every key has a default, so an empty file is a working configuration. Unknown
keys are rejected rather than ignored, because a misspelt key that silently
keeps its default is the hardest kind of mistake to find on a phone line.
Every error names the dotted key and shows the bad value with ``!r``.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from screener.errors import ConfigError
from screener.record import Record, fields

# typing stays out of classic AGI's start-up; see screener.record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

DEFAULT_PATH = Path("/etc/screener/screener.toml")
CONFIG_ENV = "SCREENER_CONFIG"

# The codes a predictive dialer recognises; IC and VC make it drop the number.
SIT_CODES = ("IC", "VC", "RO", "NC")
DTMF_KEYS = frozenset("0123456789*#")

# Bounds that keep a typo from tying up the line: a menu repeated 50 times or a
# 10-minute digit wait would hold a real caller hostage.
MAX_ROUNDS = 10
MAX_WAIT_SECONDS = 60.0

# A configuration is a few kilobytes; the cap bounds what a wrong path (a log
# file, a device) makes us read.
MAX_FILE_BYTES = 1024 * 1024
# Names and prompts are spoken: a sentence, not a page.
MAX_TEXT_LENGTH = 1000

PROMPT_NAMES = (
    "main_menu",
    "second_menu",
    "decoy",
    "goodbye",
    "not_in_service",
    "blocked_last",
    "unblocked_last",
    "allowed_last",
    "no_last_caller",
)
PLACEHOLDERS = frozenset(
    {"owner", "other", "decoy", "owner_key", "others_key", "other_key", "decoy_key"}
)


class Names(Record):
    """The names the menus offer."""

    owner: str = "Adrian"
    other: str = "Kim"
    decoy: str = "James"


class Keys(Record):
    """The DTMF keys of both menus."""

    owner: str = "1"
    others: str = "2"
    other: str = "1"
    decoy: str = "9"


class Menu(Record):
    """Menu playback: the tone code, the rounds and the wait for a key."""

    sit_code: str = "IC"
    rounds: int = 2
    wait_seconds: float = 5.0


class Prompts(Record):
    """Spoken texts, with ``{owner}``-style placeholders, and user recordings."""

    main_menu: str = (
        "Please press {owner_key} for {owner}, and press {others_key} for "
        "everyone else."
    )
    second_menu: str = "Press {other_key} for {other}. Press {decoy_key} for {decoy}."
    decoy: str = (
        "Please remove me from your call list. There is no {decoy} at this "
        "phone number!"
    )
    goodbye: str = "Goodbye!"
    not_in_service: str = "The number you have dialed is not in service."
    # Confirmations of the handset feature codes.
    blocked_last: str = "The last caller is now blocked."
    unblocked_last: str = "The last caller is no longer blocked."
    allowed_last: str = "The last caller is now allowed."
    no_last_caller: str = "There is no last caller with a number."
    recordings: Mapping[str, Path] = MappingProxyType({})


class Sounds(Record):
    """Sound folders: where sounds are built, and where Asterisk finds them."""

    build_dir: Path = Path("sounds")
    asterisk_dir: str = "/var/lib/asterisk/sounds/screener"
    voice: str = "en-us"


class Server(Record):
    """The FastAGI listening address."""

    host: str = "127.0.0.1"
    port: int = 4573


class Database(Record):
    """The SQLite call log."""

    path: Path = Path("/var/lib/screener/screener.sqlite")


class Mail(Record):
    """Trap reports by email; the password never lives in this file."""

    enabled: bool = False
    to: str = ""
    sender: str = ""
    host: str = "localhost"
    port: int = 25
    security: str = "none"
    username: str = ""
    password_file: Path | None = None
    password_env: str = "SCREENER_SMTP_PASSWORD"
    ca_file: Path | None = None
    digest: str = "none"
    attach_recordings: bool = False
    # Asterisk's MixMonitor puts a relative file name in this folder.
    recordings_dir: Path = Path("/var/spool/asterisk/monitor")
    timeout_seconds: float = 30.0


class CallerIdSettings(Record):
    """Caller ID reading: the line's country calling code."""

    # Country calling code of the line, used to turn national numbers (and
    # list entries written without "+") into E.164.
    country_code: str = "1"


# Treatments of callers without a usable number (withheld, unavailable or
# invalid): the menu like anyone else, or the blocked treatment.
WITHHELD_TREATMENTS = ("menu", "block")


class Lists(Record):
    """The allow and block lists: withheld callers and learning from calls."""

    withheld: str = "menu"
    # A number whose caller pressed the owner's key is added to the allow list.
    allow_after_owner_key: bool = False
    # A number whose caller pressed the decoy's key is added to the block list.
    block_after_decoy: bool = True
    # A number whose caller pressed nothing through every round is blocked.
    block_after_silence: bool = False


class Ami(Record):
    """The Asterisk Manager Interface login of ``watch``, ``test-call``, ``status``.

    The secret comes from ``secret_file`` when set, then ``secret``, then the
    environment variable named by ``secret_env``.
    """

    # The secret never shows in a repr, so in no log line or traceback.
    _hidden_fields = frozenset({"secret"})

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "screener"
    # Allowed for convenience; keep the file mode 0600 when it is set.
    secret: str = ""
    secret_file: Path | None = None
    secret_env: str = "SCREENER_AMI_SECRET"
    timeout_seconds: float = 10.0


class Config(Record):
    """The whole configuration."""

    names: Names = Names()
    keys: Keys = Keys()
    menu: Menu = Menu()
    prompts: Prompts = Prompts()
    sounds: Sounds = Sounds()
    server: Server = Server()
    database: Database = Database()
    mail: Mail = Mail()
    ami: Ami = Ami()
    callerid: CallerIdSettings = CallerIdSettings()
    lists: Lists = Lists()
    source: Path | None = None

    def prompt_text(self, name: str) -> str:
        """Return the prompt ``name`` with its placeholders filled in."""
        template: str = getattr(self.prompts, name)
        return template.format_map(self.placeholder_values())

    def placeholder_values(self) -> dict[str, str]:
        """Return the values the prompt placeholders stand for."""
        return {
            "owner": self.names.owner,
            "other": self.names.other,
            "decoy": self.names.decoy,
            "owner_key": self.keys.owner,
            "others_key": self.keys.others,
            "other_key": self.keys.other,
            "decoy_key": self.keys.decoy,
        }


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the configuration path: explicit, then $SCREENER_CONFIG, then default."""
    if explicit is not None:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_PATH


def load_selected(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Load the file that :func:`config_path` selects.

    Only a missing file at the default path means the built-in defaults. A
    file named by ``explicit`` or $SCREENER_CONFIG must exist.
    """
    chosen = explicit is not None or bool(os.environ.get(CONFIG_ENV))
    return load(config_path(explicit), missing_ok=not chosen)


def load(path: Path, *, missing_ok: bool = False) -> Config:
    """Read and validate the TOML file at ``path``."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        if missing_ok:
            return Config()
        raise ConfigError("", f"configuration file not found: {str(path)!r}") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read {str(path)!r}: {exc.strerror}") from exc

    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError("", f"{str(path)!r} is over {MAX_FILE_BYTES} bytes")
    try:
        # utf-8-sig drops the byte-order mark some Windows editors write.
        document = tomllib.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("", f"invalid TOML in {str(path)!r}: {exc}") from exc
    except RecursionError:
        raise ConfigError(
            "", f"invalid TOML in {str(path)!r}: nested too deeply"
        ) from None

    return parse(document, base_dir=path.parent, source=path)


def parse(
    document: Mapping[str, Any], *, base_dir: Path, source: Path | None = None
) -> Config:
    """Validate a decoded TOML document into a :class:`Config`."""
    _reject_unknown("", document, [name for name in fields(Config) if name != "source"])
    config = Config(
        names=_parse_names(_table(document, "names")),
        keys=_parse_keys(_table(document, "keys")),
        menu=_parse_menu(_table(document, "menu")),
        prompts=_parse_prompts(_table(document, "prompts"), base_dir),
        sounds=_parse_sounds(_table(document, "sounds"), base_dir),
        server=_parse_server(_table(document, "server")),
        database=_parse_database(_table(document, "database"), base_dir),
        mail=_parse_mail(_table(document, "mail"), base_dir),
        ami=_parse_ami(_table(document, "ami"), base_dir),
        callerid=_parse_callerid(_table(document, "callerid")),
        lists=_parse_lists(_table(document, "lists")),
        source=source,
    )
    _check_keys_distinct(config.keys)
    return config


def _parse_names(table: Mapping[str, Any]) -> Names:
    _reject_unknown("names", table, ["owner", "other", "decoy"])
    values = {
        name: _text(table, "names", name, getattr(Names, name))
        for name in ("owner", "other", "decoy")
    }
    return Names(**values)


def _parse_keys(table: Mapping[str, Any]) -> Keys:
    _reject_unknown("keys", table, ["owner", "others", "other", "decoy"])
    values = {}
    for name in ("owner", "others", "other", "decoy"):
        key = _get(table, "keys", name, str, getattr(Keys, name))
        if key not in DTMF_KEYS:
            raise ConfigError(
                f"keys.{name}", f"{key!r} is not a single DTMF key (0-9, * or #)"
            )
        values[name] = key
    return Keys(**values)


def _parse_menu(table: Mapping[str, Any]) -> Menu:
    _reject_unknown("menu", table, ["sit_code", "rounds", "wait_seconds"])
    code = _get(table, "menu", "sit_code", str, Menu.sit_code).upper()
    if code not in SIT_CODES:
        valid = ", ".join(SIT_CODES)
        raise ConfigError(
            "menu.sit_code", f"unknown SIT code {table['sit_code']!r}; valid: {valid}"
        )
    rounds = _get(table, "menu", "rounds", int, Menu.rounds)
    _check_range("menu.rounds", rounds, 1, MAX_ROUNDS)
    wait = float(_get(table, "menu", "wait_seconds", (int, float), Menu.wait_seconds))
    _check_range("menu.wait_seconds", wait, 0.5, MAX_WAIT_SECONDS)
    return Menu(sit_code=code, rounds=rounds, wait_seconds=wait)


def _parse_prompts(table: Mapping[str, Any], base_dir: Path) -> Prompts:
    _reject_unknown("prompts", table, [*PROMPT_NAMES, "recordings"])
    texts = {}
    for name in PROMPT_NAMES:
        text = _text(table, "prompts", name, getattr(Prompts, name))
        _check_placeholders(f"prompts.{name}", text)
        texts[name] = text
    recordings_table = _table(table, "recordings", parent="prompts")
    _reject_unknown("prompts.recordings", recordings_table, list(PROMPT_NAMES))
    recordings = {
        name: _resolve(
            base_dir,
            _get(recordings_table, "prompts.recordings", name, str),
            f"prompts.recordings.{name}",
        )
        for name in recordings_table
    }
    return Prompts(**texts, recordings=MappingProxyType(recordings))


def _parse_sounds(table: Mapping[str, Any], base_dir: Path) -> Sounds:
    _reject_unknown("sounds", table, ["build_dir", "asterisk_dir", "voice"])
    build_dir = _get(table, "sounds", "build_dir", str, str(Sounds.build_dir))
    asterisk_dir = _get(table, "sounds", "asterisk_dir", str, Sounds.asterisk_dir)
    if not asterisk_dir.startswith("/"):
        raise ConfigError(
            "sounds.asterisk_dir",
            f"{asterisk_dir!r} must be an absolute path, as Asterisk sees it",
        )
    _check_no_control("sounds.asterisk_dir", asterisk_dir)
    voice = _text(table, "sounds", "voice", Sounds.voice)
    return Sounds(
        build_dir=_resolve(base_dir, build_dir, "sounds.build_dir"),
        asterisk_dir=asterisk_dir.rstrip("/"),
        voice=voice,
    )


def _parse_server(table: Mapping[str, Any]) -> Server:
    _reject_unknown("server", table, ["host", "port"])
    host = _text(table, "server", "host", Server.host)
    port = _get(table, "server", "port", int, Server.port)
    # 0 asks the OS for a free port, which tests and the demo use.
    _check_range("server.port", port, 0, 65535)
    return Server(host=host, port=port)


def _parse_database(table: Mapping[str, Any], base_dir: Path) -> Database:
    _reject_unknown("database", table, ["path"])
    path = _get(table, "database", "path", str, str(Database.path))
    return Database(path=_resolve(base_dir, path, "database.path"))


# ITU-T E.164 country calling codes have one to three digits and never start
# with 0.
_COUNTRY_CODE = re.compile(r"^[1-9][0-9]{0,2}$")


def _parse_callerid(table: Mapping[str, Any]) -> CallerIdSettings:
    _reject_unknown("callerid", table, ["country_code"])
    code = _get(
        table, "callerid", "country_code", str, CallerIdSettings.country_code
    ).removeprefix("+")
    if not _COUNTRY_CODE.match(code):
        raise ConfigError(
            "callerid.country_code",
            f"{table['country_code']!r} is not a country calling code;"
            ' write 1 to 3 digits, such as "1" or "44"',
        )
    return CallerIdSettings(country_code=code)


def _parse_lists(table: Mapping[str, Any]) -> Lists:
    flags = ["allow_after_owner_key", "block_after_decoy", "block_after_silence"]
    _reject_unknown("lists", table, ["withheld", *flags])
    values = {
        name: _get(table, "lists", name, bool, getattr(Lists, name)) for name in flags
    }
    return Lists(
        withheld=_choice(table, "lists", "withheld", WITHHELD_TREATMENTS),
        allow_after_owner_key=values["allow_after_owner_key"],
        block_after_decoy=values["block_after_decoy"],
        block_after_silence=values["block_after_silence"],
    )


MAIL_SECURITY = ("none", "starttls", "tls")
MAIL_DIGESTS = ("none", "hourly", "daily")
_MAIL_KEYS = [name for name in fields(Mail) if name != "sender"] + ["from"]
# A deliberately plain check: one @, no spaces or control characters, and a
# dot in the domain. Full RFC 5322 syntax allows far more than any owner needs.
_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


def _parse_mail(table: Mapping[str, Any], base_dir: Path) -> Mail:
    _reject_unknown("mail", table, _MAIL_KEYS)
    enabled = _get(table, "mail", "enabled", bool, Mail.enabled)
    to = _get(table, "mail", "to", str, Mail.to)
    sender = _get(table, "mail", "from", str, Mail.sender)
    if enabled or to:
        _check_address("mail.to", to)
    if enabled or sender:
        _check_address("mail.from", sender)
    port = _get(table, "mail", "port", int, Mail.port)
    _check_range("mail.port", port, 1, 65535)
    timeout = float(
        _get(table, "mail", "timeout_seconds", (int, float), Mail.timeout_seconds)
    )
    _check_range("mail.timeout_seconds", timeout, 1.0, 300.0)
    return Mail(
        enabled=enabled,
        to=to,
        sender=sender,
        host=_text(table, "mail", "host", Mail.host),
        port=port,
        security=_choice(table, "mail", "security", MAIL_SECURITY),
        username=_get(table, "mail", "username", str, Mail.username),
        password_file=_optional_path(table, "mail", "password_file", base_dir),
        password_env=_text(table, "mail", "password_env", Mail.password_env),
        ca_file=_optional_path(table, "mail", "ca_file", base_dir),
        digest=_choice(table, "mail", "digest", MAIL_DIGESTS),
        attach_recordings=_get(
            table, "mail", "attach_recordings", bool, Mail.attach_recordings
        ),
        recordings_dir=_resolve(
            base_dir,
            _get(table, "mail", "recordings_dir", str, str(Mail.recordings_dir)),
            "mail.recordings_dir",
        ),
        timeout_seconds=timeout,
    )


def _parse_ami(table: Mapping[str, Any], base_dir: Path) -> Ami:
    _reject_unknown("ami", table, list(fields(Ami)))
    port = _get(table, "ami", "port", int, Ami.port)
    _check_range("ami.port", port, 1, 65535)
    timeout = float(
        _get(table, "ami", "timeout_seconds", (int, float), Ami.timeout_seconds)
    )
    _check_range("ami.timeout_seconds", timeout, 1.0, 300.0)
    secret = _get(table, "ami", "secret", str, Ami.secret)
    # The secret goes into an AMI header line, which a line break would end.
    if "\r" in secret or "\n" in secret:
        raise ConfigError("ami.secret", "contains a line break")
    return Ami(
        host=_text(table, "ami", "host", Ami.host),
        port=port,
        username=_text(table, "ami", "username", Ami.username),
        secret=secret,
        secret_file=_optional_path(table, "ami", "secret_file", base_dir),
        secret_env=_text(table, "ami", "secret_env", Ami.secret_env),
        timeout_seconds=timeout,
    )


def _check_address(key: str, value: str) -> None:
    if not _ADDRESS.match(value):
        raise ConfigError(key, f"invalid email address {value!r}")


def _choice(
    table: Mapping[str, Any], section: str, name: str, choices: tuple[str, ...]
) -> str:
    value = _get(table, section, name, str, choices[0])
    if value not in choices:
        valid = ", ".join(choices)
        raise ConfigError(f"{section}.{name}", f"{value!r} is not one of {valid}")
    return value


def _optional_path(
    table: Mapping[str, Any], section: str, name: str, base_dir: Path
) -> Path | None:
    if name not in table:
        return None
    return _resolve(base_dir, _get(table, section, name, str), f"{section}.{name}")


def _get(
    table: Mapping[str, Any],
    section: str,
    name: str,
    kind: type[T] | tuple[type, ...],
    default: Any = None,
) -> T:
    value = table.get(name, default)
    # bool is a subclass of int, but `rounds = true` is a mistake, not 1.
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(f"{section}.{name}", f"contains a NUL byte: {value!r}")
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "number"
        raise ConfigError(f"{section}.{name}", f"expected a {expected}, got {value!r}")
    return value  # type: ignore[return-value]


def _text(table: Mapping[str, Any], section: str, name: str, default: str) -> str:
    value: str = _get(table, section, name, str, default)
    key = f"{section}.{name}"
    if not value.strip():
        raise ConfigError(key, f"must not be empty, got {value!r}")
    if len(value) > MAX_TEXT_LENGTH:
        raise ConfigError(
            key, f"is over {MAX_TEXT_LENGTH} characters: {value[:40]!r}..."
        )
    _check_no_control(key, value)
    return value


def _table(
    document: Mapping[str, Any], name: str, *, parent: str = ""
) -> Mapping[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        key = f"{parent}.{name}" if parent else name
        raise ConfigError(key, f"expected a table, got {value!r}")
    return value


def _reject_unknown(section: str, table: Mapping[str, Any], known: list[str]) -> None:
    for name in table:
        if name not in known:
            key = f"{section}.{name}" if section else name
            raise ConfigError(
                key, f"unknown setting {name!r}; known: {', '.join(known)}"
            )


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(key, f"{value!r} is out of range {low}..{high}")


def _check_no_control(key: str, value: str) -> None:
    # Category C covers C0 and C1 controls and format characters such as the
    # bidi overrides, which would garble prompts, logs and email headers.
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise ConfigError(key, f"contains a control character: {value!r}")


def _check_placeholders(key: str, text: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(key, f"invalid placeholder in {text!r}: {exc}") from exc
    for _literal, placeholder, spec, conversion in parsed:
        if spec or conversion:
            raise ConfigError(
                key, f"placeholders take no format or conversion, got {text!r}"
            )
        if placeholder is not None and placeholder not in PLACEHOLDERS:
            known = ", ".join(sorted(PLACEHOLDERS))
            raise ConfigError(
                key,
                f"unknown placeholder {{{placeholder}}} in {text!r}; known: {known}",
            )


def _check_keys_distinct(keys: Keys) -> None:
    if keys.owner == keys.others:
        raise ConfigError("keys.others", f"{keys.others!r} is also keys.owner")
    if keys.other == keys.decoy:
        raise ConfigError("keys.decoy", f"{keys.decoy!r} is also keys.other")


def _resolve(base_dir: Path, value: str, key: str) -> Path:
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:
        # Raised for ~name when there is no such user, or no home folder.
        raise ConfigError(key, f"cannot expand {value!r}: {exc}") from None
    return path if path.is_absolute() else base_dir / path
