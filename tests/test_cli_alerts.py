"""`retrospec alerts ...`: rules from the terminal, a test send, the log, clear errors."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import Result
from typer.testing import CliRunner

from retrospec.cli import main as cli
from retrospec.settings import Settings
from tests.support.feeds import make_feed
from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.shop import run_cli


def invoke(settings: Settings, *args: str) -> Result:
    """`retrospec ARGS` in process (errors surface as result.exception with its exit code)."""
    return CliRunner().invoke(cli.app, list(args), env={"RETROSPEC_DATA_DIR": settings.data_dir})


def test_cli_manages_rules_and_sends_a_test(
    settings: Settings, smtp: SmtpReceiver, hook: HttpReceiver
) -> None:
    make_feed(settings).conn.close()
    result = invoke(settings, "alerts", "add", "email", "--to", "dev@example.com", "--json")
    assert result.exit_code == 0, result.output
    added = json.loads(result.stdout)
    assert added["channel"] == "email" and added["events"] == ["promoted", "regression", "spike"]
    assert "smtp_url is not set" in result.stderr
    result = invoke(
        settings, "alerts", "add", "webhook", "--url", hook.url, "--format", "json",
        "--site", "shop", "--on", "promoted,regression",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "signing secret" in result.stdout and "whsec_" in result.stdout
    result = invoke(settings, "alerts", "list", "--json")
    listed = json.loads(result.stdout)["rules"]
    assert [r["id"] for r in listed] == [added["id"], added["id"] + 1]
    assert listed[1]["site"]["name"] == "shop" and listed[1]["signed"] is True
    assert "whsec_" not in result.stdout
    table = invoke(settings, "alerts", "list").stdout
    assert "dev@example.com" in table and "json" in table
    # A test send through each rule, printed and logged.
    result = invoke(settings, "alerts", "test", str(added["id"]), "--smtp-url", smtp.url)
    assert result.exit_code == 0, result.output
    assert "sent a test alert" in result.stdout
    (mail,) = smtp.wait(1)
    assert mail["Subject"].startswith("[RetroSpec] Test alert from RetroSpec")
    result = invoke(settings, "alerts", "test", str(added["id"] + 1))
    assert result.exit_code == 0, result.output
    assert hook.wait(1)[0].json()["event"] == "test"
    log = json.loads(invoke(settings, "alerts", "log", "--json").stdout)["deliveries"]
    assert [(d["event"], d["outcome"]) for d in log] == [("test", "sent"), ("test", "sent")]
    assert "test" in invoke(settings, "alerts", "log").stdout
    result = invoke(settings, "alerts", "remove", str(added["id"]))
    assert result.exit_code == 0 and "removed alert rule" in result.stdout
    assert len(json.loads(invoke(settings, "alerts", "list", "--json").stdout)["rules"]) == 1


def test_cli_bad_input_is_refused_with_a_clear_error(settings: Settings) -> None:
    make_feed(settings).conn.close()
    cases = [
        (["alerts", "add", "email", "--to", "not-an-address"], "not an e-mail address"),
        (["alerts", "add", "webhook", "--url", "ftp://x.example/h"], "https:// or http://"),
        (["alerts", "add", "email", "--to", "a@b.example", "--on", "boom"], "unknown event"),
        (["alerts", "add", "email", "--to", "a@b.example", "--site", "nope"], "no site"),
        (["alerts", "remove", "99"], "no alert rule 99"),
        (["alerts", "test", "99"], "no alert rule 99"),
    ]
    for args, message in cases:
        result = invoke(settings, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in str(result.exception), (args, result.exception)
    bad_format = invoke(
        settings, "alerts", "add", "webhook", "--url", "https://x.example/h", "--format", "teams"
    )
    assert bad_format.exit_code == 2
    assert json.loads(invoke(settings, "alerts", "list", "--json").stdout)["rules"] == []


def test_cli_test_against_an_unreachable_smtp_host_fails_clearly(settings: Settings) -> None:
    make_feed(settings).conn.close()
    added = invoke(settings, "alerts", "add", "email", "--to", "dev@example.com", "--json")
    rule_id = json.loads(added.stdout)["id"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = invoke(
        settings, "alerts", "test", str(rule_id), "--smtp-url", f"smtp://127.0.0.1:{port}"
    )
    assert result.exit_code == 1
    assert "not delivered" in str(result.exception) and "unreachable" in str(result.exception)
    log = json.loads(invoke(settings, "alerts", "log", "--json").stdout)["deliveries"]
    assert log[0]["outcome"] == "retry"


@pytest.mark.slow
def test_entry_point_prints_one_line_errors(settings: Settings) -> None:
    make_feed(settings).conn.close()
    env = {"RETROSPEC_DATA_DIR": settings.data_dir}
    bad = run_cli(env, "alerts", "add", "webhook", "--url", "gopher://x.example/h")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "https:// or http://" in bad.stderr
