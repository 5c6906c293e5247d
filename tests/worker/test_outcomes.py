"""Stored state is the source of truth (DESIGN invariant 7): switches and a dry run decide what
is pushed, never what is stored. On the in-memory ledger."""

from __future__ import annotations

from typing import Any

from calendly_brevo.ledger.memory import MemoryLedger
from tests import payloads
from tests.worker.fakes import RecordingBrevo
from worker.pipeline import Pipeline

EMAIL = "ada@example.com"


def pipeline_with(brevo: RecordingBrevo | None = None, **overrides: Any) -> Pipeline:
    return Pipeline(payloads.settings(**overrides), MemoryLedger(), brevo or RecordingBrevo())


def process(pipeline: Pipeline, envelope: dict[str, Any]) -> Any:
    return pipeline.process(payloads.body(envelope).decode(), 1.0)


def stored_uris(pipeline: Pipeline) -> list[str]:
    records, _ = pipeline.ledger.contact_state(EMAIL)
    return sorted(r.invitee_uri for r in records)


def test_a_dry_run_stores_the_record_and_says_dry_run_not_applied() -> None:
    brevo = RecordingBrevo(dry_run=True)
    pipeline = pipeline_with(brevo)
    outcome = process(pipeline, payloads.invitee_created(email=EMAIL))
    assert outcome.status == "dry_run"
    assert stored_uris(pipeline) == [payloads.invitee_uri()]
    row = pipeline.ledger.event(outcome.event_id)
    assert row is not None and row.status == "dry_run"
    assert pipeline.ledger.last_pushed(EMAIL) is None  # nothing was pushed
    assert brevo.dry_calls == [("upsert", EMAIL), ("event", EMAIL)]  # the client logged them


def test_a_dry_run_event_redelivered_is_a_duplicate() -> None:
    pipeline = pipeline_with(RecordingBrevo(dry_run=True))
    env = payloads.invitee_created(email=EMAIL)
    assert process(pipeline, env).status == "dry_run"
    assert process(pipeline, env).status == "duplicate"


def test_a_cancellation_with_its_switch_off_is_stored_and_suppressed() -> None:
    brevo = RecordingBrevo()
    pipeline = pipeline_with(brevo, connectors={"calendly": {"sync": {"cancellations": False}}})
    assert process(pipeline, payloads.invitee_created(email=EMAIL)).status == "applied"
    outcome = process(pipeline, payloads.invitee_canceled(email=EMAIL))
    assert (outcome.status, outcome.detail) == ("suppressed", "sync_switch")
    records, _ = pipeline.ledger.contact_state(EMAIL)
    assert [r.status for r in records] == ["canceled"]
    row = pipeline.ledger.event(outcome.event_id)
    assert row is not None and (row.status, row.last_error) == ("suppressed", "sync_switch")
    assert len(brevo.upserts) == 1 and len(brevo.events) == 1
    assert process(pipeline, payloads.invitee_canceled(email=EMAIL)).status == "duplicate"


def test_a_disabled_connector_still_stores_every_invitee_event() -> None:
    brevo = RecordingBrevo()
    pipeline = pipeline_with(brevo, connectors={"calendly": {"enabled": False}})
    outcome = process(pipeline, payloads.invitee_created(email=EMAIL))
    assert (outcome.status, outcome.detail) == ("suppressed", "connector_disabled")
    assert stored_uris(pipeline) == [payloads.invitee_uri()]
    assert brevo.upserts == [] and brevo.events == []


def test_events_the_connector_does_not_handle_stay_ignored() -> None:
    pipeline = pipeline_with()
    assert process(pipeline, payloads.event_type_created()).status == "ignored"


def test_an_applied_upsert_records_the_pushed_projection_with_its_event() -> None:
    from calendly_brevo.pushed import mapping_fingerprint, projection_hash

    pipeline = pipeline_with()
    outcome = process(pipeline, payloads.invitee_created(email=EMAIL))
    pushed = pipeline.ledger.last_pushed(EMAIL)
    assert pushed is not None
    assert pushed.event_id == outcome.event_id
    assert pushed.list_ids == (10,)
    assert pushed.attributes["BOOKING_STATUS"] == "booked"
    assert pushed.projection_hash == projection_hash(pushed.attributes, pushed.list_ids)
    assert pushed.mapping_fingerprint == mapping_fingerprint(pipeline.settings.rules)


def test_the_mapping_fingerprint_changes_with_the_mapping_and_only_with_it() -> None:
    from calendly_brevo.pushed import mapping_fingerprint

    base = payloads.settings()
    assert mapping_fingerprint(base.rules) == mapping_fingerprint(payloads.settings().rules)
    moved = payloads.settings(
        connectors={"calendly": {"event_mapping": {"discovery_call": {"list_id": 12}}}}
    )
    switched = payloads.settings(connectors={"calendly": {"sync": {"cancellations": False}}})
    other = payloads.settings(worker={"threads": 3})
    assert mapping_fingerprint(moved.rules) != mapping_fingerprint(base.rules)
    assert mapping_fingerprint(switched.rules) != mapping_fingerprint(base.rules)
    assert mapping_fingerprint(other.rules) == mapping_fingerprint(base.rules)


def test_a_suppressed_or_dry_run_event_records_nothing_as_pushed() -> None:
    pipeline = pipeline_with(connectors={"calendly": {"enabled": False}})
    process(pipeline, payloads.invitee_created(email=EMAIL))
    assert pipeline.ledger.last_pushed(EMAIL) is None


def test_an_excluded_event_type_is_stored_and_suppressed_and_left_out_of_the_projection() -> None:
    brevo = RecordingBrevo()
    pipeline = pipeline_with(
        brevo, connectors={"calendly": {"sync": {"event_types": {"exclude": ["demo"]}}}}
    )
    demo = payloads.invitee_created(
        email=EMAIL,
        invitee_uri=payloads.invitee_uri("E2", "I2"),
        event_type_uri=payloads.DEMO_EVENT_TYPE_URI,
        event_type_name="Demo",
    )
    outcome = process(pipeline, demo)
    assert (outcome.status, outcome.detail) == ("suppressed", "event_type_filter")
    assert brevo.upserts == [] and brevo.events == []
    assert stored_uris(pipeline) == [payloads.invitee_uri("E2", "I2")]
    assert process(pipeline, payloads.invitee_created(email=EMAIL)).status == "applied"
    [(_, _, lists, _)] = brevo.upserts
    assert lists == (10,)  # the demo booking's list 11 is not pushed


def test_a_forgotten_persons_past_event_is_neither_stored_nor_pushed_but_a_new_booking_is() -> None:
    brevo = RecordingBrevo()
    pipeline = pipeline_with(brevo)
    pipeline.ledger.add_tombstone(EMAIL, [payloads.invitee_uri()])
    outcome = process(pipeline, payloads.invitee_canceled(email=EMAIL))
    assert (outcome.status, outcome.detail) == ("suppressed", "forgotten")
    assert stored_uris(pipeline) == []
    assert brevo.upserts == [] and brevo.events == []
    row = pipeline.ledger.event(outcome.event_id)
    assert row is not None and EMAIL not in (row.payload or "")
    new = payloads.invitee_created(email=EMAIL, invitee_uri=payloads.invitee_uri("E9", "I9"))
    assert process(pipeline, new).status == "applied"
    assert len(brevo.upserts) == 1


def test_a_new_event_unlinks_a_list_the_connector_added_under_an_earlier_mapping() -> None:
    brevo = RecordingBrevo()
    ledger = MemoryLedger()
    Pipeline(payloads.settings(), ledger, brevo).process(
        payloads.body(payloads.invitee_created(email=EMAIL)).decode(), 1.0
    )
    assert brevo.lists[EMAIL] == {10}
    only_demo = {"connectors": {"calendly": {"event_mapping": {"discovery_call": {"list_id": 12}}}}}
    second = payloads.invitee_created(email=EMAIL, invitee_uri=payloads.invitee_uri("E2", "I2"))
    Pipeline(payloads.settings(**only_demo), ledger, brevo).process(
        payloads.body(second).decode(), 1.0
    )
    assert brevo.lists[EMAIL] == {12}


def test_brevo_dry_run_true_keeps_the_workers_client_dry_even_with_a_key(tmp_path: Any) -> None:
    from calendly_brevo.bootstrap import Services
    from tests.conftest import make_settings
    from worker.runtime import make_brevo

    settings = make_settings(
        tmp_path, BREVO_API_KEY="xkeysib-dry-but-keyed-0123456789", BREVO_DRY_RUN="true"
    )
    services = Services(settings)
    try:
        assert make_brevo(services).dry_run
    finally:
        services.close()
