"""CLI conventions: exit codes, one-line errors with the fix, --json, read-only commands that
create nothing, NO_COLOR, one duration and date grammar."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from calendly_brevo.durations import parse_duration, parse_when
from cli.main import cli
from tests.e2e.procs import free_port, run_cli

SIGNING_KEY = "cli-signing-key-Vb7Nq2Lw9Xr4Tz6Hm1Pk"


def embedded_env(tmp_path: Path) -> dict[str, str]:
    return {
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "REDIS_URL": "",
        "DATABASE_URL": "",
        "CONNECTOR_CONFIG": "",
    }


def production_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "CONNECTOR_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "BREVO_DRY_RUN": "true",
        "CONNECTOR_CONFIG": "",
    }


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


def dead_port_urls() -> tuple[str, str]:
    port = free_port()  # nothing listens there
    return (
        f"postgresql://connector:hunter2-secret@127.0.0.1:{port}/x",
        f"redis://:hunter2-secret@127.0.0.1:{port}/0",
    )


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["doctor"],
        ["dlq", "list"],
        ["dlq", "show", "1"],
        ["trace", "--email", "a@example.com"],
    ],
)
def test_read_only_commands_create_no_files_and_say_the_store_is_missing(
    tmp_path: Path, command: list[str]
) -> None:
    env = embedded_env(tmp_path)
    result = run_cli(command, env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no database at" in result.stdout + result.stderr
    assert "calendly-brevo run" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_read_only_commands_add_no_file_to_an_existing_store(tmp_path: Path) -> None:
    env = embedded_env(tmp_path) | {"CALENDLY_WEBHOOK_SIGNING_KEY": ""}  # doctor looks further
    assert run_cli(["migrate"], env).returncode == 0
    before = sorted(p.name for p in (tmp_path / "data").iterdir())
    for command in (["doctor"], ["status"], ["trace", "--email", "a@example.com"]):
        run_cli(command, env)
        assert sorted(p.name for p in (tmp_path / "data").iterdir()) == before, command
    assert "secret.key" not in before  # doctor used to generate the embedded encryption key


def test_status_exits_1_with_one_line_per_unreachable_part_and_hides_passwords(
    tmp_path: Path,
) -> None:
    database, redis = dead_port_urls()
    result = run_cli(["status", "--json"], production_env(database, redis))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    for part in ("queue", "database", "rate_limiter"):
        assert report[part]["ok"] is False
        assert "\n" not in report[part]["error"]
        assert report[part]["fix"]
    assert "cannot reach the database" in report["database"]["error"]
    assert "cannot reach Redis" in report["queue"]["error"]
    assert "hunter2" not in result.stdout + result.stderr


def test_a_command_that_cannot_reach_postgres_prints_one_line_and_the_fix(tmp_path: Path) -> None:
    database, redis = dead_port_urls()
    result = run_cli(["dlq", "list"], production_env(database, redis))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: cannot reach the database at postgresql")
    assert lines[1].startswith("fix: start it, or check DATABASE_URL")
    assert "hunter2" not in result.stderr


def test_a_config_error_is_the_error_then_the_fix_once_and_exit_2(tmp_path: Path) -> None:
    env = production_env(*dead_port_urls()) | {"BREVO_DRY_RUN": "false", "BREVO_API_KEY": ""}
    result = run_cli(["worker"], env)  # production without a Brevo key and no dry run
    assert result.returncode == 2, result.stdout + result.stderr
    error, fix = result.stderr.strip().splitlines()
    assert error.startswith("error: config error at brevo.api_key: is required here")
    assert fix == (
        "fix: set BREVO_API_KEY, or BREVO_DRY_RUN=true to log the Brevo calls without sending"
    )
    assert "BREVO_DRY_RUN" not in error  # the fix is said once, on its own line


@pytest.mark.parametrize(
    ("command", "variable", "key", "service"),
    [
        (["webhooks", "list"], "CALENDLY_API_URL", "connectors.calendly.api_url", "Calendly"),
        (["brevo", "setup"], "BREVO_API_URL", "brevo.api_url", "Brevo"),
    ],
)
def test_a_command_that_cannot_reach_calendly_or_brevo_prints_one_line_and_the_fix(
    tmp_path: Path, command: list[str], variable: str, key: str, service: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("brevo:\n  startup_wait_seconds: 0\n")  # no waiting out the outage
    env = embedded_env(tmp_path) | {
        "CONNECTOR_CONFIG": str(config),
        "CALENDLY_ACCESS_TOKEN": "pat-unused",
        "BREVO_API_KEY": "xkeysib-unused-0123456789",
        variable: f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    result = run_cli(command, env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith(f"error: cannot reach {service} at http://127.0.0.1:"), lines
    assert lines[-1] == f"fix: check {variable} ({key}) and the network"
    assert "Traceback" not in result.stderr


def test_status_json_on_a_healthy_production_deployment_exits_0_with_the_buckets(
    postgres_url: str, redis_url: str
) -> None:
    env = production_env(postgres_url, redis_url)
    assert run_cli(["migrate"], env).returncode == 0
    result = run_cli(["status", "--json"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["queue"] == {"ok": True, "ready": 0, "delayed": 0, "dead": 0}
    assert set(report["rate_limiter"]["buckets"]) == {"contacts", "events", "other"}
    assert report["database"]["dead_letters_open"] == 0
    assert report["brevo"]["dry_run"] is True


def test_doctor_json_lists_every_check_and_exits_1_on_a_fail(tmp_path: Path) -> None:
    result = run_cli(["doctor", "--json"], embedded_env(tmp_path))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["database"]["status"] == "FAIL"
    assert by_name["database"]["fix"]


def test_no_color_strips_the_colour_codes(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    coloured = CliRunner().invoke(cli, ["dlq", "list"], env=env, color=True)
    plain = CliRunner().invoke(cli, ["dlq", "list"], env={**env, "NO_COLOR": "1"}, color=True)
    assert "\x1b[" in coloured.output
    assert "\x1b[" not in plain.output
    assert "no database at" in plain.output


@pytest.mark.parametrize("text", ["48h", "48H", " 2d ", "172800s", "2880m", "1.5h"])
def test_one_duration_grammar_for_every_option(text: str) -> None:
    assert parse_duration(text) in (timedelta(hours=48), timedelta(hours=1.5))


def test_a_point_in_time_is_a_duration_ago_or_a_date() -> None:
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert parse_when("24H", now) == now - timedelta(days=1)
    assert parse_when("2024-01-01", now) == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_when("2024-01-01T09:00:00Z", now) == datetime(2024, 1, 1, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_when("yesterday", now)


@pytest.mark.parametrize(
    ("args", "bad"),
    [
        (["prune", "--older-than", "soon"], "soon"),
        (["dlq", "list", "--since", "yesterday"], "yesterday"),
        (["reconcile", "--window", "forever"], "forever"),
        (["backfill", "--since", "last year"], "last year"),
    ],
)
def test_a_bad_duration_is_a_usage_error_naming_the_value(
    tmp_path: Path, args: list[str], bad: str
) -> None:
    result = invoke(embedded_env(tmp_path), *args)
    assert result.exit_code == 2, result.output
    assert repr(bad) in result.output
    assert not (tmp_path / "data").exists()


def test_prune_takes_upper_case_units_like_every_other_command(
    tmp_path: Path,
) -> None:
    env = embedded_env(tmp_path)
    assert invoke(env, "migrate").exit_code == 0
    result = invoke(env, "prune", "--older-than", "48H")
    assert result.exit_code == 0, result.output
    assert "2 days" in result.output


def test_shell_completion_as_the_readme_documents_it(tmp_path: Path) -> None:
    env = embedded_env(tmp_path) | {"_CALENDLY_BREVO_COMPLETE": "bash_source"}
    script = run_cli([], env)
    assert script.returncode == 0 and "_calendly_brevo_completion()" in script.stdout
    asked = env | {"_CALENDLY_BREVO_COMPLETE": "bash_complete", "COMP_WORDS": "calendly-brevo tr"}
    completed = run_cli([], asked | {"COMP_CWORD": "1"})
    assert completed.stdout.split() == ["plain,trace"]
    assert not (tmp_path / "data").exists()
