"""``calendly-brevo trace``: one person's timeline from the store, by email, event id or URI."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from calendly_brevo.events import event_from_dict
from calendly_brevo.ledger import PushedProjection
from cli.main import cli
from tests import payloads
from tests.worker.test_pipeline import make_pipeline

ADA_URI = payloads.invitee_uri("TR1", "TRI1")
BOB_URI = payloads.invitee_uri("TR2", "TRI2")


@pytest.fixture
def stored(tmp_path: Path) -> Any:
    """Ada booked then cancelled (and a duplicate); Bob's event refused by Brevo (dead letter)."""
    pipeline, brevo, services = make_pipeline(tmp_path)
    created = payloads.invitee_created(email="Ada@Example.com", invitee_uri=ADA_URI)
    for doc in (
        created,
        created,
        payloads.invitee_canceled(email="ada@example.com", invitee_uri=ADA_URI),
    ):
        pipeline.process(payloads.body(doc).decode(), time.time())
    brevo.fail_upserts, brevo.permanent = 1, True
    bob = payloads.invitee_created(email="bob@example.com", invitee_uri=BOB_URI)
    assert pipeline.process(payloads.body(bob).decode(), time.time()).status == "dead_lettered"
    event_id = event_from_dict(created).identity.event_id
    services.ledger.record_pushed(
        PushedProjection(
            email="ada@example.com",
            attributes={"BOOKING_STATUS": "cancelled"},
            list_ids=(20,),
            projection_hash="h1",
            mapping_fingerprint="f1",
            pushed_at=datetime(2026, 12, 3, 9, 30, tzinfo=UTC),
            event_id=event_id,
        )
    )
    yield event_id
    services.close()


def trace(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, ["trace", *args], env=env)


def test_trace_by_email_shows_events_outcomes_bookings_and_the_projection(
    stored: str, env: dict[str, str]
) -> None:
    result = trace(env, "--email", "ADA@example.com", "--json")
    assert result.exit_code == 0, result.output
    t = json.loads(result.output)
    assert t["email"] == "ada@example.com"
    assert [(d["event_name"], d["status"]) for d in t["deliveries"]] == [
        ("invitee.created", "applied"),
        ("invitee.canceled", "applied"),
    ]
    assert sorted(t["deliveries"][0]["effects"]) == ["contact", "event"]
    assert [b["status"] for b in t["bookings"]] == ["canceled"]
    assert t["projection"]["status"] == "cancelled"
    assert t["projection"]["attributes"]["BOOKING_STATUS"] == "cancelled"
    assert t["dead_letters"] == []
    assert t["last_pushed"]["pushed_at"].startswith("2026-12-03T09:30:00")
    assert t["last_pushed"]["list_ids"] == [20]

    text = trace(env, "--email", "ada@example.com")
    assert text.exit_code == 0
    assert "what Brevo should hold: status cancelled" in text.output
    assert "invitee.canceled" in text.output
    assert "last pushed to Brevo: 2026-12-03 09:30:00 UTC" in text.output


def test_trace_finds_the_same_person_by_event_id_and_by_invitee_uri(
    stored: str, env: dict[str, str]
) -> None:
    by_id = json.loads(trace(env, "--event-id", stored, "--json").output)
    by_uri = json.loads(trace(env, "--invitee-uri", ADA_URI, "--json").output)
    assert by_id["email"] == by_uri["email"] == "ada@example.com"
    assert by_id == by_uri


def test_a_dead_letter_in_the_trace_says_how_to_replay_it(stored: str, env: dict[str, str]) -> None:
    t = json.loads(trace(env, "--email", "bob@example.com", "--json").output)
    [dead] = t["dead_letters"]
    assert dead["reason"] == "brevo_permanent"
    assert dead["replay"] == f"calendly-brevo dlq replay {dead['id']}"
    assert t["deliveries"][0]["status"] == "dead"
    assert t["last_pushed"] is None


def test_an_unknown_person_exits_1_and_a_missing_selector_is_a_usage_error(
    stored: str, env: dict[str, str]
) -> None:
    unknown = trace(env, "--email", "nobody@example.com")
    assert unknown.exit_code == 1
    assert "nothing stored about nobody@example.com" in unknown.output
    assert trace(env).exit_code == 2
