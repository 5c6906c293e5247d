"""The pipeline's rules, on the in-memory ledger: no database. ``make_pipeline`` gives the same
pipeline on a real database (SQLite, or Postgres in the integration tests) for the tests that
need one; the ledgers themselves agree by ``tests/ledger/test_contract.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from calendly_brevo.bootstrap import Services
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.errors import BrevoTransientError
from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.ledger.memory import MemoryLedger
from tests import payloads
from tests.conftest import make_settings
from tests.worker.fakes import RecordingBrevo
from worker.pipeline import Pipeline


def make_pipeline(
    tmp_path: Path, database_url: str | None = None, **settings_overrides: Any
) -> tuple[Pipeline, RecordingBrevo, Services]:
    env: dict[str, Any] = {}
    if database_url:
        env["DATABASE_URL"] = database_url
    base = make_settings(tmp_path, **env)
    settings = payloads.settings(storage=base.storage.model_dump(mode="json"), **settings_overrides)
    services = Services(settings)
    upgrade(services.engine)
    brevo = RecordingBrevo()
    return Pipeline(settings, services.ledger, brevo), brevo, services


def memory_pipeline(**settings_overrides: Any) -> tuple[Pipeline, RecordingBrevo]:
    """A pipeline on the in-memory ledger, for the tests of its rules."""
    brevo = RecordingBrevo()
    return Pipeline(payloads.settings(**settings_overrides), MemoryLedger(), brevo), brevo


def send(pipeline: Pipeline, envelope: dict[str, Any], **kw: Any) -> str:
    return pipeline.process(payloads.body(envelope).decode(), 1.0, **kw).status


@pytest.fixture
def pipe() -> tuple[Pipeline, RecordingBrevo]:
    return memory_pipeline()


def test_invitee_created_upserts_contact_then_sends_one_event(pipe: Any) -> None:
    pipeline, brevo = pipe
    assert send(pipeline, payloads.invitee_created(email="ada@example.com")) == "applied"
    [(email, attrs, _lists, _unlink)] = brevo.upserts
    assert email == "ada@example.com"
    assert attrs["BOOKING_STATUS"] == "booked"
    assert [e[0] for e in brevo.events] == ["calendly_invitee_created"]


def test_redelivery_is_a_duplicate_and_changes_nothing(pipe: Any) -> None:
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    assert send(pipeline, env) == "applied"
    assert send(pipeline, env) == "duplicate"
    assert len(brevo.upserts) == 1
    assert len(brevo.events) == 1


def test_unknown_events_are_ignored_not_dead_lettered(pipe: Any) -> None:
    pipeline, brevo = pipe
    assert send(pipeline, payloads.event_type_created()) == "ignored"
    assert brevo.upserts == [] and brevo.events == []


def test_non_json_is_dead_lettered_with_its_reason(pipe: Any) -> None:
    pipeline, _ = pipe
    outcome = pipeline.process("{not json", 1.0)
    assert outcome.status == "dead_lettered"
    [row] = pipeline.ledger.dead_letters(DeadLetterFilter())
    assert row.reason == "not_json"
    assert row.payload == "{not json"


def test_invitee_without_email_is_dead_lettered(pipe: Any) -> None:
    pipeline, brevo = pipe
    env = payloads.with_payload(payloads.invitee_created(), email=None)
    assert send(pipeline, env) == "dead_lettered"
    assert brevo.upserts == []


def test_transient_failure_raises_then_retry_does_not_resend_the_event(
    pipe: Any,
) -> None:
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    brevo.fail_events = 1
    with pytest.raises(BrevoTransientError):
        send(pipeline, env)
    assert len(brevo.upserts) == 1  # the contact went through before the event failed
    assert send(pipeline, env, attempt=2) == "applied"
    assert len(brevo.upserts) == 1  # recorded effect: not upserted again
    assert len(brevo.events) == 1


def test_a_definite_refusal_is_resent_without_a_lookup(pipe: Any) -> None:
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    brevo.fail_events = 1  # a 503: Brevo did not take it
    with pytest.raises(BrevoTransientError):
        send(pipeline, env)
    assert send(pipeline, env, attempt=2) == "applied"
    assert brevo.lookups == []  # GET /events costs from Brevo's 100/h bucket: not wasted
    assert len(brevo.events) == 1


def test_an_event_whose_answer_was_lost_is_looked_up_not_sent_twice(
    pipe: Any,
) -> None:
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    brevo.lost_answers = 1  # Brevo recorded it, the read timed out
    with pytest.raises(BrevoTransientError):
        send(pipeline, env)
    assert send(pipeline, env, attempt=2) == "applied"
    assert len(brevo.events) == 1
    [(name, event_id)] = brevo.lookups
    assert name == "calendly_invitee_created"
    assert brevo.events[0][2]["connector_event_id"] == event_id


def test_a_lost_answer_for_an_event_brevo_did_not_keep_is_sent_again(
    pipe: Any,
) -> None:
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    brevo.lost_answers = 1
    with pytest.raises(BrevoTransientError):
        send(pipeline, env)
    brevo.events.clear()  # as if the request had died on the way
    assert send(pipeline, env, attempt=2) == "applied"
    assert len(brevo.events) == 1 and len(brevo.lookups) == 1


def test_an_attempt_that_died_mid_event_is_looked_up_before_resending(
    pipe: Any,
) -> None:
    """A worker SIGKILLed after Brevo took the event: the claim stays ``processing``."""
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    real_record = pipeline.ledger.record_effect

    def die_after_brevo_took_it(*args: Any, **kwargs: Any) -> None:
        if "event" in args[1]:  # the custom event's record
            raise SystemExit("killed")  # nothing after this line runs, like SIGKILL
        real_record(*args, **kwargs)

    pipeline.ledger.record_effect = die_after_brevo_took_it
    with pytest.raises(SystemExit):
        send(pipeline, env)
    pipeline.ledger.record_effect = real_record
    assert len(brevo.events) == 1
    assert send(pipeline, env, attempt=1) == "applied"  # a redelivery starts at attempt 1
    assert len(brevo.events) == 1 and len(brevo.lookups) == 1
    assert send(pipeline, env) == "duplicate"


def test_an_attempt_that_died_before_its_contact_was_recorded_needs_no_lookup(
    pipe: Any,
) -> None:
    """The custom event comes after the contact upsert: a worker that died before recording
    the upsert never reached ``POST /events``, so the next attempt sends without asking."""
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    real_record = pipeline.ledger.record_effect

    def die_after_the_upsert(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed")

    pipeline.ledger.record_effect = die_after_the_upsert
    with pytest.raises(SystemExit):
        send(pipeline, env)
    pipeline.ledger.record_effect = real_record
    assert brevo.events == []
    assert send(pipeline, env) == "applied"
    assert len(brevo.events) == 1 and brevo.lookups == []


def test_the_lookup_can_be_turned_off() -> None:
    pipeline, brevo = memory_pipeline(brevo={"check_before_resend": False})
    env = payloads.invitee_created()
    brevo.lost_answers = 1
    with pytest.raises(BrevoTransientError):
        send(pipeline, env)
    assert send(pipeline, env, attempt=2) == "applied"
    assert len(brevo.events) == 2 and brevo.lookups == []  # at-least-once, as configured


def test_last_attempt_dead_letters_a_transient_failure(pipe: Any) -> None:
    pipeline, brevo = pipe
    brevo.fail_upserts = 5
    assert send(pipeline, payloads.invitee_created(), final=True) == "dead_lettered"
    [row] = pipeline.ledger.dead_letters(DeadLetterFilter())
    assert row.reason == "retries_exhausted"
    assert "503" in row.error


def test_an_event_that_fails_again_keeps_one_open_dead_letter(pipe: Any) -> None:
    pipeline, brevo = pipe
    env = payloads.invitee_created()
    brevo.fail_upserts, brevo.permanent = 2, True
    assert send(pipeline, env) == "dead_lettered"
    assert send(pipeline, env) == "dead_lettered"  # a duplicate delivery meets the same 400
    [row] = pipeline.ledger.dead_letters(DeadLetterFilter())
    assert row.attempts == 2 and row.reason == "brevo_permanent"
    assert send(pipeline, env) == "applied"  # the cause is gone


def test_permanent_brevo_error_dead_letters_at_once(pipe: Any) -> None:
    pipeline, brevo = pipe
    brevo.fail_upserts, brevo.permanent = 1, True
    assert send(pipeline, payloads.invitee_created()) == "dead_lettered"


def test_reschedule_in_either_order_ends_booked_with_one_rescheduled_event() -> None:
    for order in ("cancel_first", "create_first"):
        pipeline, brevo = memory_pipeline()
        canceled, created = payloads.reschedule_pair(email="r@example.com")
        seq = [canceled, created] if order == "cancel_first" else [created, canceled]
        for env in seq:
            assert send(pipeline, env) == "applied"
        assert brevo.contacts["r@example.com"]["BOOKING_STATUS"] == "booked"
        assert [e[0] for e in brevo.events] == ["calendly_invitee_rescheduled"]


def test_cancelling_one_of_two_bookings_keeps_the_contact_booked(pipe: Any) -> None:
    pipeline, brevo = pipe
    a = payloads.invitee_created(
        email="two@example.com", invitee_uri=payloads.invitee_uri("E1", "I1")
    )
    b = payloads.invitee_created(
        email="two@example.com",
        invitee_uri=payloads.invitee_uri("E2", "I2"),
        start_time="2030-02-01T10:00:00.000000Z",
    )
    cancel_a = payloads.invitee_canceled(
        email="two@example.com", invitee_uri=payloads.invitee_uri("E1", "I1")
    )
    for env in (a, b, cancel_a):
        send(pipeline, env)
    assert brevo.contacts["two@example.com"]["BOOKING_STATUS"] == "booked"
    assert [e[0] for e in brevo.events] == [
        "calendly_invitee_created",
        "calendly_invitee_created",
        "calendly_invitee_canceled",
    ]


def test_no_show_then_unmark(pipe: Any) -> None:
    pipeline, brevo = pipe
    send(pipeline, payloads.invitee_created(email="ns@example.com"))
    send(pipeline, payloads.no_show_created(email="ns@example.com"))
    assert brevo.contacts["ns@example.com"]["BOOKING_STATUS"] == "no_show"
    send(pipeline, payloads.no_show_deleted(email="ns@example.com"))
    assert brevo.contacts["ns@example.com"]["BOOKING_STATUS"] == "booked"
    assert [e[0] for e in brevo.events] == ["calendly_invitee_created", "calendly_invitee_no_show"]


def test_group_event_invitees_are_separate_contacts(pipe: Any) -> None:
    pipeline, brevo = pipe
    for env in payloads.group_event(["g1@example.com", "g2@example.com", "g3@example.com"]):
        assert send(pipeline, env) == "applied"
    assert sorted(brevo.contacts) == ["g1@example.com", "g2@example.com", "g3@example.com"]
    assert len(brevo.events) == 3


def test_sync_switches_turn_effects_off() -> None:
    pipeline, brevo = memory_pipeline(
        connectors={
            "calendly": {"sync": {"contacts": False, "events": True, "cancellations": False}}
        },
    )
    assert send(pipeline, payloads.invitee_created()) == "applied"
    assert brevo.upserts == []
    assert len(brevo.events) == 1
    assert send(pipeline, payloads.invitee_canceled()) == "suppressed"
    assert len(brevo.events) == 1


def test_the_event_row_keeps_payload_status_and_effects(pipe: Any) -> None:
    pipeline, _ = pipe
    env = payloads.invitee_created()
    outcome = pipeline.process(payloads.body(env).decode(), 1.0)
    row = pipeline.ledger.event(outcome.event_id or "")
    assert row is not None
    assert (row.status, row.attempts) == ("applied", 1)
    assert json.loads(row.payload or "")["event"] == "invitee.created"
    assert row.effects == {"contact": True, "event": "calendly_invitee_created"}


def test_the_pipeline_on_sqlite_keeps_the_same_rows(tmp_path: Path) -> None:
    """One pass on a real database: the migrations, the services' ledger and the pipeline."""
    pipeline, brevo, services = make_pipeline(tmp_path)
    try:
        env = payloads.invitee_created()
        assert send(pipeline, env) == "applied"
        assert send(pipeline, env) == "duplicate"
        assert len(brevo.events) == 1
        from sqlalchemy import select

        from calendly_brevo.db.models import ProcessedEvent

        with services.sessions() as s:
            [row] = s.scalars(select(ProcessedEvent)).all()
        assert (row.status, row.attempts) == ("applied", 1)
        assert row.effects == {"contact": True, "event": "calendly_invitee_created"}
    finally:
        services.close()
