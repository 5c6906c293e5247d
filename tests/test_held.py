"""Held custom events (``resync --events``) on the in-memory ledger: which are listed, and that
``--send`` sends each once through the worker's at-most-once path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from calendly_brevo.event_send import EVENT_IN_DOUBT
from calendly_brevo.held import held_events
from calendly_brevo.held_send import HeldSender
from calendly_brevo.ledger.memory import MemoryLedger
from tests import payloads
from tests.worker.fakes import RecordingBrevo
from worker.pipeline import Pipeline

ADA, BOB = "ada@example.com", "bob@example.com"
EVENTS_OFF: dict[str, Any] = {"connectors": {"calendly": {"sync": {"events": False}}}}
CANCELS_OFF: dict[str, Any] = {"connectors": {"calendly": {"sync": {"cancellations": False}}}}
BOB_URI = payloads.invitee_uri("E2", "I2")


def deliver(ledger: MemoryLedger, brevo: RecordingBrevo, *envs: Any, **overrides: Any) -> None:
    pipeline = Pipeline(payloads.settings(**overrides), ledger, brevo)
    for env in envs:
        pipeline.process(payloads.body(env).decode(), 1.0)


def listed(ledger: MemoryLedger, since: datetime | None = None, **overrides: Any) -> list[Any]:
    return list(held_events(ledger, payloads.settings(**overrides), since))


def send_all(ledger: MemoryLedger, brevo: RecordingBrevo, **overrides: Any) -> HeldSender:
    settings = payloads.settings(**overrides)
    sender = HeldSender(ledger, settings, brevo)
    for held in list(held_events(ledger, settings, None)):
        sender.send(held)
    return sender


def test_a_dry_runs_events_are_listed_and_sent_once() -> None:
    ledger = MemoryLedger()
    deliver(
        ledger,
        RecordingBrevo(dry_run=True),
        payloads.invitee_created(email=ADA),
        payloads.invitee_canceled(email=ADA),
    )
    held = listed(ledger)
    assert [(h.brevo_event, h.status, h.email) for h in held] == [
        ("calendly_invitee_created", "dry_run", ADA),
        ("calendly_invitee_canceled", "dry_run", ADA),
    ]
    brevo = RecordingBrevo()
    first = send_all(ledger, brevo)
    assert (first.summary.sent, first.summary.failures) == (2, 0)
    assert [e[0] for e in brevo.events] == ["calendly_invitee_created", "calendly_invitee_canceled"]
    assert all(
        e[2]["connector_event_id"] == h.event_id for e, h in zip(brevo.events, held, strict=True)
    )
    row = ledger.event(held[0].event_id)
    assert row is not None and row.status == "applied"
    assert listed(ledger) == []
    again = send_all(ledger, brevo)
    assert again.summary.sent == 0 and len(brevo.events) == 2


def test_events_held_by_a_switch_are_listed_once_it_is_on_and_not_before() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    deliver(ledger, brevo, payloads.invitee_created(email=ADA), **EVENTS_OFF)
    deliver(ledger, brevo, payloads.invitee_canceled(email=ADA), **CANCELS_OFF)
    deliver(ledger, brevo, payloads.invitee_created(email=BOB, invitee_uri=BOB_URI))
    assert [e[0] for e in brevo.events] == ["calendly_invitee_created"]  # Bob's, live
    assert listed(ledger, **EVENTS_OFF) == []  # still off: nothing would be sent
    held = listed(ledger)
    assert [(h.brevo_event, h.status, h.reason) for h in held] == [
        ("calendly_invitee_created", "applied", None),  # contact pushed, event switch off
        ("calendly_invitee_canceled", "suppressed", "sync_switch"),
    ]
    send_all(ledger, brevo)
    assert sorted(e[0] for e in brevo.events if e[1] == ADA) == [
        "calendly_invitee_canceled",
        "calendly_invitee_created",
    ]
    assert [e[1] for e in brevo.events].count(BOB) == 1  # a sent event is never listed again


def test_since_bounds_the_list_and_forgotten_or_filtered_events_are_not_listed() -> None:
    ledger = MemoryLedger()
    dry = RecordingBrevo(dry_run=True)
    deliver(ledger, dry, payloads.invitee_created(email=ADA))
    deliver(ledger, dry, payloads.invitee_created(email=BOB, invitee_uri=BOB_URI))
    assert len(listed(ledger)) == 2
    assert listed(ledger, since=datetime.now(UTC) + timedelta(seconds=1)) == []
    ledger.add_tombstone(BOB, [BOB_URI])
    assert [h.email for h in listed(ledger)] == [ADA]
    only_demo: dict[str, Any] = {
        "connectors": {"calendly": {"sync": {"event_types": {"include": ["demo"]}}}}
    }
    assert listed(ledger, **only_demo) == []


def test_an_event_whose_answer_was_lost_is_looked_up_before_it_is_sent_again() -> None:
    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), payloads.invitee_created(email=ADA))
    brevo = RecordingBrevo(lost_answers=1)  # Brevo takes it, the answer is lost
    first = send_all(ledger, brevo)
    assert (first.summary.sent, first.summary.failures) == (0, 1)
    [held] = listed(ledger)
    assert held.in_doubt
    second = send_all(ledger, brevo)
    assert second.summary.sent == 1
    assert len(brevo.events) == 1 and len(brevo.lookups) == 1  # found: not sent twice
    assert listed(ledger) == []


def test_a_send_that_never_reached_brevo_is_not_left_in_doubt() -> None:
    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), payloads.invitee_created(email=ADA))
    brevo = RecordingBrevo(throttle_events=1)  # 429: nothing applied
    assert send_all(ledger, brevo).summary.failures == 1
    [held] = listed(ledger)
    assert not held.in_doubt
    row = ledger.event(held.event_id)
    assert row is not None and EVENT_IN_DOUBT not in row.effects
    assert send_all(ledger, brevo).summary.sent == 1
    assert len(brevo.events) == 1 and brevo.lookups == []


def test_a_run_killed_mid_request_leaves_the_event_in_doubt() -> None:
    """The mark is written before the request, so a process that dies inside it (here: the
    fake raises something no handler expects) leaves the event to be looked up first."""
    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), payloads.invitee_created(email=ADA))

    class Dies(RecordingBrevo):
        def create_event(self, event_name: str, **kw: Any) -> None:
            super().create_event(event_name, **kw)
            raise SystemExit("killed")

    settings = payloads.settings()
    [held] = held_events(ledger, settings, None)
    dying = Dies()
    try:
        HeldSender(ledger, settings, dying).send(held)
    except SystemExit:
        pass
    [again] = held_events(ledger, settings, None)
    assert again.in_doubt
    brevo = RecordingBrevo(events=list(dying.events))
    assert HeldSender(ledger, settings, brevo).send(again)
    assert len(brevo.events) == 1 and len(brevo.lookups) == 1


def test_a_listing_sent_twice_sends_once() -> None:
    """Two ``--send`` runs that listed the same events: the second reads each again under the
    contact lock and finds it sent."""
    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), payloads.invitee_created(email=ADA))
    settings = payloads.settings()
    [held] = held_events(ledger, settings, None)
    brevo = RecordingBrevo()
    assert HeldSender(ledger, settings, brevo).send(held)
    late = HeldSender(ledger, settings, brevo)
    assert not late.send(held)
    assert late.summary.skipped == 1 and len(brevo.events) == 1
