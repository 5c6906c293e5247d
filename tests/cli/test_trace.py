"""``calendly-brevo trace``: one person's timeline from the store, by email, event id or URI;
with real processing (the actor, its retries and a real Brevo client against the fake Brevo):
the signing key of each delivery and every Brevo call with its status."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.events import event_from_dict
from calendly_brevo.key_labels import fingerprint
from calendly_brevo.ledger import PushedProjection
from calendly_brevo.queueing import build_message
from cli.main import cli
from tests import payloads
from tests.conftest import SIGNING_KEY
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo
from tests.fakes.brevo_records import Attribute
from tests.worker.stub_worker import drain_messages
from tests.worker.test_pipeline import make_pipeline
from worker.pipeline import Pipeline

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


# -- real processing: the actor, its retries, a real Brevo client, the fake Brevo ----------------
BREVO_KEY = "xkeysib-trace-test-key-0123456789"
GRACE_URI = payloads.invitee_uri("TR3", "TRI3")
#: The label the receiver gives a webhook verified by the configured key (never the key).
KEY_LABEL = f"signing_key:{fingerprint(SIGNING_KEY)}"


@pytest.fixture
def processed(tmp_path: Path) -> Iterator[FakeBrevoServer]:
    """Grace books (a webhook; Brevo answers the first upsert with a 502, the retry succeeds),
    cancels (a message queued by a receiver older than the key label), and her no-show comes
    from a backfill; Bob's custom event is refused (a dead letter)."""
    attributes = [Attribute(n) for n in ("BOOKING_STATUS", "MEETING_DATE", "CALENDLY_EVENT_TYPE")]
    with running_fake_brevo(
        api_key=BREVO_KEY, lists=[10, 11, 12, 20], attributes=attributes
    ) as fake:
        worker = {"max_retries": 3, "min_backoff_seconds": 0.01, "max_backoff_seconds": 0.05}
        recording, _, services = make_pipeline(tmp_path, worker=worker)
        client = BrevoClient(httpx.Client(base_url=fake.base_url), BREVO_KEY, None)
        pipeline = Pipeline(recording.settings, services.ledger, client)
        try:
            process(pipeline, fake)
        finally:
            client.close()
            services.close()
        yield fake


def process(pipeline: Pipeline, fake: FakeBrevoServer) -> None:
    now = time.time()

    def message(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return build_message(payloads.body(doc).decode(), received_at=now, **kw)

    fake.inject("5xx", path=r"/contacts$", method="POST", status=502, count=1)
    created = payloads.invitee_created(email="grace@example.com", invitee_uri=GRACE_URI)
    drain_messages(pipeline, [message(created, signature_key=KEY_LABEL)])
    # As a receiver older than the key label wrote it: no signature_key option.
    old = message(payloads.invitee_canceled(email="grace@example.com", invitee_uri=GRACE_URI))
    assert "signature_key" not in old["options"]
    no_show = payloads.no_show_created(email="grace@example.com", invitee_uri=GRACE_URI)
    drain_messages(pipeline, [old, message(no_show, source="backfill")])
    fake.inject("400", path=r"/events$", method="POST", count=1)
    bob = payloads.invitee_created(email="bob@example.com", invitee_uri=BOB_URI)
    drain_messages(pipeline, [message(bob, signature_key=KEY_LABEL)])


def calls_of(calls: list[dict[str, Any]]) -> list[tuple[str, int, str, str]]:
    return [
        (c["event_name"], c["attempt"], f"{c['method']} {c['route']}", c["status"]) for c in calls
    ]


def test_trace_names_the_signing_key_of_each_delivery_and_every_brevo_call(
    processed: FakeBrevoServer, env: dict[str, str]
) -> None:
    result = trace(env, "--email", "grace@example.com", "--json")
    assert result.exit_code == 0, result.output
    t = json.loads(result.output)
    assert [(d["event_name"], d["source"], d["signature_key"]) for d in t["deliveries"]] == [
        ("invitee.created", "webhook", KEY_LABEL),
        ("invitee.canceled", "webhook", "unknown"),
        ("invitee_no_show.created", "backfill", "none (backfill)"),
    ]
    assert SIGNING_KEY not in result.output
    created = t["deliveries"][0]
    assert (created["status"], created["attempts"]) == ("applied", 2)
    # The failed attempt's call is kept, then the retry's; a list move is a PUT on the route
    # template, never on the path with her email in it.
    assert calls_of(t["brevo_calls"]) == [
        ("invitee.created", 1, "POST /contacts", "502"),
        ("invitee.created", 2, "POST /contacts", "201"),
        ("invitee.created", 2, "POST /events", "204"),
        ("invitee.canceled", 1, "POST /contacts", "204"),
        ("invitee.canceled", 1, "PUT /contacts/{identifier}", "204"),
        ("invitee.canceled", 1, "POST /events", "204"),
        ("invitee_no_show.created", 1, "POST /contacts", "204"),
        ("invitee_no_show.created", 1, "PUT /contacts/{identifier}", "204"),
        ("invitee_no_show.created", 1, "POST /events", "204"),
    ]
    assert all(c["ms"] >= 0 and c["at"] for c in t["brevo_calls"])
    assert "grace@example.com" not in json.dumps(t["brevo_calls"])  # route templates only

    text = trace(env, "--email", "grace@example.com")
    assert text.exit_code == 0
    assert f"webhook, signed with {KEY_LABEL};" in text.output
    assert "webhook, signing key not recorded;" in text.output
    assert "backfill, no signature;" in text.output
    assert "Brevo calls" in text.output and "POST /contacts" in text.output
    assert "502" in text.output


def test_a_dead_lettered_events_refused_call_is_in_the_trace(
    processed: FakeBrevoServer, env: dict[str, str]
) -> None:
    t = json.loads(trace(env, "--email", "bob@example.com", "--json").output)
    assert t["deliveries"][0]["status"] == "dead"
    assert calls_of(t["brevo_calls"]) == [
        ("invitee.created", 1, "POST /contacts", "201"),
        ("invitee.created", 1, "POST /events", "400"),
    ]


def test_forget_takes_the_persons_brevo_call_log_with_their_events(
    processed: FakeBrevoServer, env: dict[str, str]
) -> None:
    bob_before = json.loads(trace(env, "--email", "bob@example.com", "--json").output)
    args = ["forget", "--email", "grace@example.com", "--yes", "--keep-brevo"]
    forgotten = CliRunner().invoke(cli, args, env=env)
    assert forgotten.exit_code == 0, forgotten.output
    assert trace(env, "--email", "grace@example.com").exit_code == 1
    with sqlite3.connect(Path(env["CONNECTOR_DATA_DIR"]) / "calendly-brevo.db") as db:
        logs = db.execute("SELECT email, brevo_calls FROM processed_events").fetchall()
    assert [email for email, calls in logs if calls is not None] == ["bob@example.com"]
    after = json.loads(trace(env, "--email", "bob@example.com", "--json").output)
    assert after["brevo_calls"] == bob_before["brevo_calls"]  # nobody else's
