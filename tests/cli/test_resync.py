"""`calendly-brevo resync` on an embedded SQLite store filled during a dry run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests import payloads
from tests.worker.test_pipeline import make_pipeline


@pytest.fixture
def dry_store(tmp_path: Path) -> Any:
    pipeline, brevo, services = make_pipeline(tmp_path)
    brevo.dry_run = True
    for env in (
        payloads.invitee_created(email="ada@example.com"),
        payloads.invitee_created(
            email="bob@example.com", invitee_uri=payloads.invitee_uri("E2", "I2")
        ),
    ):
        assert pipeline.process(payloads.body(env).decode(), time.time()).status == "dry_run"
    yield services
    services.close()


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_resync_without_a_brevo_key_refuses_and_says_how_to_plan(
    dry_store: Any, env: dict[str, str]
) -> None:
    result = invoke(env, "resync")
    assert result.exit_code == 1
    assert "--dry-run" in result.output


def test_resync_dry_run_lists_what_the_dry_run_held_back(
    dry_store: Any, env: dict[str, str]
) -> None:
    result = invoke(env, "resync", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["checked"], summary["changed"], summary["calls"]) == (2, 2, 0)
    assert [c["email"] for c in summary["contacts"]] == ["ada@example.com", "bob@example.com"]
    assert all(c["attributes"]["BOOKING_STATUS"] == "booked" for c in summary["contacts"])


def test_status_counts_dry_run_events_apart_from_applied(
    dry_store: Any, env: dict[str, str]
) -> None:
    result = invoke(env, "status", "--json")
    assert json.loads(result.stdout)["database"]["events_by_status"] == {"dry_run": 2}


def test_status_shows_suppressed_events_with_their_reason(
    tmp_path: Path, env: dict[str, str]
) -> None:
    pipeline, _brevo, services = make_pipeline(
        tmp_path, connectors={"calendly": {"sync": {"cancellations": False}}}
    )
    try:
        for env_ in (payloads.invitee_created(), payloads.invitee_canceled()):
            pipeline.process(payloads.body(env_).decode(), time.time())
    finally:
        services.close()
    db = json.loads(invoke(env, "status", "--json").stdout)["database"]
    assert db["events_by_status"] == {"applied": 1, "suppressed": 1}
    assert db["suppressed_by_reason"] == {"sync_switch": 1}
    assert "suppressed 1 (sync_switch 1)" in invoke(env, "status").output
