"""Operator commands on the embedded SQLite store: dlq, prune, forget, status, migrate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cli.main import cli
from tests import payloads
from tests.worker.test_pipeline import make_pipeline


def invoke(env: dict[str, str], *args: str, input: str | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    return result


def test_migrate_creates_the_embedded_database(env: dict[str, str], tmp_path: Path) -> None:
    result = invoke(env, "migrate")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "calendly-brevo.db").exists()


def test_bad_config_fails_with_the_key_path_and_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("brevo:\n  plan: platinum\n")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "migrate"], env=env)
    assert result.exit_code == 2
    assert "brevo.plan" in result.output


def test_dlq_list_show_replay_purge(env: dict[str, str], tmp_path: Path) -> None:
    pipeline, brevo, services = make_pipeline(tmp_path)
    brevo.fail_upserts, brevo.permanent = 1, True
    env_body = payloads.body(payloads.invitee_created(email="dl@example.com")).decode()
    assert pipeline.process(env_body, 1.0).status == "dead_lettered"
    assert pipeline.process("garbage", 1.0).status == "dead_lettered"

    listed = invoke(env, "dlq", "list", "--json")
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert {r["reason"] for r in rows} == {"brevo_permanent", "not_json"}
    only = invoke(env, "dlq", "list", "--json", "--error", "brevo")
    assert len(only.output.splitlines()) == 1
    brevo_row = next(r for r in rows if r["reason"] == "brevo_permanent")

    shown = invoke(env, "dlq", "show", str(brevo_row["id"]))
    assert json.loads(shown.output)["payload"]["event"] == "invitee.created"

    replayed = invoke(env, "dlq", "replay", str(brevo_row["id"]), "--json")
    assert json.loads(replayed.output) == {"replayed": [brevo_row["id"]]}
    # The replay is on the embedded queue; run it through the pipeline like the worker would.
    from calendly_brevo.queueing import SqliteQueue, sqlite_queue_path

    q = SqliteQueue(sqlite_queue_path(tmp_path / "data"))
    taken = q.take("calendly", 10**15)
    assert taken is not None
    message = json.loads(taken[1])
    assert message["args"][2] == "replay"
    assert pipeline.process(message["args"][0], message["args"][1]).status == "applied"
    assert pipeline.process(message["args"][0], message["args"][1]).status == "duplicate"
    assert len(brevo.events) == 1

    assert invoke(env, "dlq", "list", "--json").output.count("\n") == 1  # only the garbage row
    nothing = invoke(env, "dlq", "purge", "--event", "invitee.canceled", "--yes", "--json")
    assert json.loads(nothing.output) == {"purged": 0}
    assert "purged 2" in invoke(env, "dlq", "purge", "--all", "--yes").output
    assert invoke(env, "dlq", "list", "--json", "--all").output == ""
    services.close()


def test_dlq_replay_needs_a_selection(env: dict[str, str]) -> None:
    invoke(env, "migrate")
    result = CliRunner().invoke(cli, ["dlq", "replay"], env=env)
    assert result.exit_code == 2


def test_prune_keeps_dedup_ids_but_drops_payloads(env: dict[str, str], tmp_path: Path) -> None:
    pipeline, _brevo, services = make_pipeline(tmp_path)
    body = payloads.body(payloads.invitee_created(email="old@example.com")).decode()
    pipeline.process(body, 1.0)
    result = invoke(env, "prune", "--older-than", "0s")
    assert "pruned 1 payload" in result.output
    assert pipeline.process(body, 1.0).status == "duplicate"  # still deduplicated
    from sqlalchemy import select

    from calendly_brevo.db.models import ProcessedEvent

    with services.sessions() as s:
        row = s.scalars(select(ProcessedEvent)).one()
    assert row.payload is None and row.email is None
    services.close()


def test_forget_removes_what_is_stored_about_a_person(env: dict[str, str], tmp_path: Path) -> None:
    pipeline, _brevo, services = make_pipeline(tmp_path)
    pipeline.process(
        payloads.body(payloads.invitee_created(email="gdpr@example.com")).decode(), 1.0
    )
    pipeline.process(
        payloads.body(
            payloads.invitee_created(
                email="other@example.com", invitee_uri=payloads.invitee_uri("E9", "I9")
            )
        ).decode(),
        1.0,
    )
    result = invoke(env, "forget", "--email", "GDPR@example.com", "--yes")
    assert "1 invitee record" in result.output
    from sqlalchemy import select, text

    from calendly_brevo.db.models import Invitee

    with services.sessions() as s:
        assert [i.email for i in s.scalars(select(Invitee)).all()] == ["other@example.com"]
        dump = " ".join(str(r) for r in s.execute(text("SELECT * FROM processed_events")).all())
    assert "gdpr@example.com" not in dump
    services.close()


def test_status_shows_one_screen(env: dict[str, str], tmp_path: Path) -> None:
    pipeline, _brevo, services = make_pipeline(tmp_path)
    pipeline.process(payloads.body(payloads.invitee_created()).decode(), 1.0)
    result = invoke(env, "status")
    assert result.exit_code == 0, result.output
    for label in ("queue", "last event applied", "dead letters", "rate limiter", "mode"):
        assert label in result.output
    services.close()


def test_commands_other_than_worker_ignore_the_workers_metrics_directory(tmp_path: Path) -> None:
    """A CronJob in a worker pod inherits PROMETHEUS_MULTIPROC_DIR: it must still run."""
    from tests.e2e.procs import run_cli

    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "does-not-exist"),
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CONNECTOR_CONFIG": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    for args in (["migrate"], ["dlq", "list"], ["status"]):
        result = run_cli(args, env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "does-not-exist").exists()
