"""Configuration loading and the errors a user sees for bad values."""

import re
from pathlib import Path

import pytest

from screener import config as config_module
from screener import record
from screener.config import Config
from screener.errors import ConfigError


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "screener.toml"
    path.write_text(text, encoding="utf-8")
    return config_module.load(path)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, "")
    assert config.names.owner == "Adrian"
    assert config.keys.decoy == "9"
    assert config.menu.rounds == 2
    assert config.server.port == 4573


def test_default_menu_text() -> None:
    assert Config().prompt_text("main_menu") == (
        "Please press 1 for Adrian, and press 2 for everyone else."
    )


def test_names_and_keys_fill_prompts(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[names]\ndecoy = "Rachel"\n[keys]\ndecoy = "8"\n')
    assert config.prompt_text("second_menu") == "Press 1 for Kim. Press 8 for Rachel."
    assert "no Rachel at" in config.prompt_text("decoy")


def test_relative_paths_follow_config_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[database]\npath = "calls.sqlite"\n')
    assert config.database.path == tmp_path / "calls.sqlite"


@pytest.mark.parametrize(
    ("text", "key", "shown"),
    [
        ("[menu]\nrounds = 0\n", "menu.rounds", "0"),
        ("[menu]\nrounds = true\n", "menu.rounds", "True"),
        ('[menu]\nrounds = "2"\n', "menu.rounds", "'2'"),
        ("[menu]\nwait_seconds = 600\n", "menu.wait_seconds", "600.0"),
        ('[menu]\nsit_code = "XX"\n', "menu.sit_code", "'XX'"),
        ('[keys]\nowner = "11"\n', "keys.owner", "'11'"),
        ('[keys]\nothers = "1"\n', "keys.others", "'1'"),
        ('[names]\nowner = ""\n', "names.owner", "''"),
        ('[names]\nowner = "A\\nB"\n', "names.owner", "'A\\nB'"),
        ("[server]\nport = 70000\n", "server.port", "70000"),
        ('[prompts]\ngoodbye = "Bye {nobody}"\n', "prompts.goodbye", "{nobody}"),
        ('[sounds]\nasterisk_dir = "relative"\n', "sounds.asterisk_dir", "'relative'"),
        ("[menu]\nround = 3\n", "menu.round", "'round'"),
        ("names = 3\n", "names", "3"),
    ],
)
def test_bad_value_names_key_and_value(
    tmp_path: Path, text: str, key: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert shown in str(caught.value)


def test_unknown_sit_code_lists_valid_codes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid: IC, VC, RO, NC"):
        load_text(tmp_path, '[menu]\nsit_code = "ZZ"\n')


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid TOML in .*screener\.toml"):
        load_text(tmp_path, "[menu\n")


def test_missing_explicit_file_is_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        config_module.load(tmp_path / "absent.toml")


def test_missing_default_file_gives_defaults(tmp_path: Path) -> None:
    config = config_module.load(tmp_path / "absent.toml", missing_ok=True)
    assert config == Config()


def test_missing_file_from_environment_is_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config_module.CONFIG_ENV, str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="not found"):
        config_module.load_selected()


def test_missing_argument_file_is_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config_module.CONFIG_ENV, raising=False)
    with pytest.raises(ConfigError, match="not found"):
        config_module.load_selected(tmp_path / "absent.toml")


def test_missing_default_path_gives_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config_module.CONFIG_ENV, raising=False)
    monkeypatch.setattr(config_module, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert config_module.load_selected() == Config()


def test_unknown_home_folder_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database\.path: cannot expand"):
        load_text(tmp_path, '[database]\npath = "~no-such-user-xyz/calls.sqlite"\n')


def test_loaded_recordings_are_read_only(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[prompts.recordings]\nmain_menu = "menu.wav"\n')
    assert config.prompts.recordings["main_menu"] == tmp_path / "menu.wav"
    with pytest.raises(TypeError):
        config.prompts.recordings["goodbye"] = tmp_path / "bye.wav"  # type: ignore[index]


@pytest.mark.parametrize(
    "text",
    [
        "Press {owner_key} for {owner}.",
        "No placeholder at all.",
        "Braces {{like this}} are literal, {decoy}.",
    ],
)
def test_valid_prompt_placeholders(text: str) -> None:
    config = config_module.parse({"prompts": {"main_menu": text}}, base_dir=Path("."))
    assert config.prompts.main_menu == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Press {nobody}.", r"unknown placeholder \{nobody\}"),
        ("Press {}.", r"unknown placeholder \{\}"),
        ("Press {0}.", r"unknown placeholder \{0\}"),
        ("Press {owner!r}.", "placeholders take no format or conversion"),
        ("Press {owner:>9}.", "placeholders take no format or conversion"),
        ("Press {owner.upper}.", r"unknown placeholder \{owner\.upper\}"),
        ("Press {owner[0]}.", r"unknown placeholder \{owner\[0\]\}"),
        ("Press {owner.", "invalid placeholder"),
        ("Press owner}.", "invalid placeholder"),
        ("Press {a{b}}.", "invalid placeholder"),
    ],
)
def test_invalid_prompt_placeholders(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"prompts\.main_menu: " + message):
        config_module.parse({"prompts": {"main_menu": text}}, base_dir=Path("."))


def test_mail_settings_parse(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[mail]\nenabled = true\nto = "owner@example.org"\n'
        'from = "screener@example.org"\nsecurity = "starttls"\nport = 587\n'
        'password_file = "smtp.secret"\n',
    )
    assert config.mail.enabled
    assert config.mail.sender == "screener@example.org"
    assert config.mail.password_file == tmp_path / "smtp.secret"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[mail]\nenabled = true\nto = "nobody"\nfrom = "a@b.org"\n', "mail.to"),
        ('[mail]\nenabled = true\nto = "a@b.org"\n', "mail.from"),
        ('[mail]\nto = "a@b.org\\r\\nBcc: x@y.org"\n', "mail.to"),
        ('[mail]\nsecurity = "ssl"\n', "mail.security"),
        ('[mail]\ndigest = "weekly"\n', "mail.digest"),
        ('[mail]\npassword = "hunter2"\n', "mail.password"),
    ],
)
def test_bad_mail_setting_names_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    assert caught.value.key == key


def test_example_file_matches_defaults() -> None:
    example = Path(__file__).resolve().parent.parent / "screener.example.toml"
    config = config_module.load(example)
    defaults = config_module.parse({}, base_dir=example.parent)
    assert config == record.replace(defaults, source=example)


def test_example_file_lists_every_setting() -> None:
    example = Path(__file__).resolve().parent.parent / "screener.example.toml"
    listed: dict[str, set[str]] = {}
    section = ""
    for line in example.read_text().splitlines():
        if header := re.match(r"^\[([\w.]+)\]", line):
            section = header[1]
        elif setting := re.match(r"^#? ?(\w+) = ", line):
            listed.setdefault(section, set()).add(setting[1])
    renamed = {"sender": "from"}
    for section in record.fields(Config):
        if section == "source":
            continue
        section_value = getattr(Config(), section)
        expected = {
            renamed.get(name, name)
            for name in record.fields(type(section_value))
            if name != "recordings"
        }
        assert expected <= listed.get(section, set()), section
