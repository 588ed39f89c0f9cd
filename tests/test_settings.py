"""Settings precedence, validation, the example file, `retrospec init` and `retrospec settings`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrospec.cli import main as cli
from retrospec.errors import ConfigError
from retrospec.paths import example_config
from retrospec.settings import FIELDS, Settings, load_settings, parse_duration


def test_defaults_without_any_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_settings(None, env={})
    assert loaded.settings == Settings()
    assert loaded.config_path is None
    assert set(loaded.sources.values()) == {"default"}
    assert loaded.settings.port == 8080 and loaded.settings.host == "127.0.0.1"
    assert loaded.settings.data_path == (tmp_path / "retrospec-data").resolve()


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('port = 9001\nhost = "0.0.0.0"\npromote_after = 5\ndemo = false\n')
    env = {"RETROSPEC_PORT": "9002", "RETROSPEC_PROMOTE_AFTER": "3"}
    loaded = load_settings(config, env=env, overrides={"port": 9003, "host": None})
    s = loaded.settings
    assert s.port == 9003  # flag beats env beats file
    assert s.promote_after == 3  # env beats file
    assert s.host == "0.0.0.0"  # file beats default; a None flag is "not given"
    assert s.demo is False
    assert loaded.sources["port"] == "flag --port"
    assert loaded.sources["promote_after"] == "env RETROSPEC_PROMOTE_AFTER"
    assert loaded.sources["host"] == str(config)
    assert loaded.sources["retention_days"] == "default"


def test_config_found_by_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "retrospec.toml").write_text("port = 7001\n")
    assert load_settings(None, env={}).settings.port == 7001
    other = tmp_path / "other.toml"
    other.write_text("port = 7002\n")
    assert load_settings(None, env={"RETROSPEC_CONFIG": str(other)}).settings.port == 7002


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("port = 'abc'\n", {}, "port must be a int"),
        ("bogus = 1\n", {}, "unknown setting 'bogus'"),
        ("port = 70000\n", {}, "port must be between"),
        ("", {"RETROSPEC_JOBS": "maybe"}, "RETROSPEC_JOBS: jobs must be a bool"),
        ("", {"RETROSPEC_SQLITE_SYNCHRONOUS": "off"}, "must be one of normal, full"),
        ("port = [\n", {}, "cannot read"),
    ],
)
def test_bad_config_is_a_clear_error(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "r.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(config, env=env)


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_example_documents_every_field_with_its_default() -> None:
    text = example_config().read_text()
    defaults = Settings()
    for name in FIELDS:
        match = re.search(rf"^# {name} = (.+)$", text, re.MULTILINE)
        assert match, f"retrospec.toml.example does not list {name}"
        # The commented value is the real default, so uncommenting it changes nothing.
        parsed = load_settings(None, env={}, overrides={name: _toml_value(match.group(1))})
        assert getattr(parsed.settings, name) == getattr(defaults, name)


def _toml_value(text: str) -> object:
    import tomllib

    return tomllib.loads(f"v = {text}")["v"]


def test_example_is_valid_toml_when_uncommented(tmp_path: Path) -> None:
    lines = [
        line[2:]
        for line in example_config().read_text().splitlines()
        if re.match(r"^# [a-z_]+ = ", line)
    ]
    config = tmp_path / "all.toml"
    config.write_text("\n".join(lines) + "\n")
    assert load_settings(config, env={}).settings == Settings()


def test_parse_duration() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("36h") == 36 * 3600
    assert parse_duration("90m") == 5400
    assert parse_duration("2") == 2 * 86400
    with pytest.raises(ConfigError):
        parse_duration("soon")


def test_init_writes_secret_and_refuses_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(cli.app, ["init"])
    assert first.exit_code == 0, first.output
    text = (tmp_path / "retrospec.toml").read_text()
    secret = re.search(r'^secret = "([^"]+)"$', text, re.MULTILINE)
    assert secret and len(secret.group(1)) >= 40
    assert (tmp_path / "retrospec.toml").stat().st_mode & 0o777 == 0o600
    loaded = load_settings(None, env={})
    assert loaded.settings.secret == secret.group(1)
    second = runner.invoke(cli.app, ["init"])
    assert second.exit_code != 0
    assert (tmp_path / "retrospec.toml").read_text() == text


def test_settings_command_shows_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "retrospec.toml").write_text("port = 9100\n")
    monkeypatch.setenv("RETROSPEC_RETENTION_DAYS", "3")
    result = CliRunner().invoke(cli.app, ["settings", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["settings"]["port"] == {"value": 9100, "source": "retrospec.toml"}
    assert data["settings"]["retention_days"]["source"] == "env RETROSPEC_RETENTION_DAYS"
    assert data["settings"]["retention_days"]["value"] == 3.0
    assert data["settings"]["host"]["source"] == "default"
    table = CliRunner().invoke(cli.app, ["settings"])
    assert table.exit_code == 0
    assert "env RETROSPEC_RETENTION_DAYS" in table.output


def test_settings_command_hides_the_smtp_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETROSPEC_SMTP_URL", "smtp://ops:hunter2@mail.example.com:587")
    monkeypatch.setenv("RETROSPEC_SMTP_FROM", "alerts@example.com")
    result = CliRunner().invoke(cli.app, ["settings", "--json"])
    data = json.loads(result.output)["settings"]
    assert data["smtp_url"] == {
        "value": "smtp://ops:***@mail.example.com:587",
        "source": "env RETROSPEC_SMTP_URL",
    }
    assert data["smtp_from"]["value"] == "alerts@example.com"
    assert "hunter2" not in CliRunner().invoke(cli.app, ["settings"]).output
