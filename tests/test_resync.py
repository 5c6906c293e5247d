"""resync on the in-memory ledger: the projection of the stored state, diffed against the last
push, pushed without custom events (DESIGN invariant 7)."""

from __future__ import annotations

from typing import Any

from calendly_brevo.config import Settings
from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.ledger.memory import MemoryLedger, MemoryTables
from calendly_brevo.resync import Resync, selected
from tests import payloads
from tests.worker.fakes import RecordingBrevo
from worker.pipeline import Pipeline

ADA, BOB = "ada@example.com", "bob@example.com"
MOVED: dict[str, Any] = {
    "connectors": {"calendly": {"event_mapping": {"discovery_call": {"list_id": 12}}}}
}


def deliver(ledger: MemoryLedger, brevo: RecordingBrevo, *envs: Any, **overrides: Any) -> None:
    pipeline = Pipeline(payloads.settings(**overrides), ledger, brevo)
    for env in envs:
        pipeline.process(payloads.body(env).decode(), 1.0)


def resync(
    ledger: MemoryLedger, brevo: RecordingBrevo | None, *, full: bool = False, **overrides: Any
) -> Any:
    run = Resync(
        ledger, payloads.settings(**overrides).rules, brevo, full=full, sleep=lambda _: None
    )
    return run.run(selected(ledger, None, page=1))


def two_bookings() -> list[dict[str, Any]]:
    return [
        payloads.invitee_created(email=ADA),
        payloads.invitee_created(email=BOB, invitee_uri=payloads.invitee_uri("E2", "I2")),
    ]


def test_after_a_dry_run_resync_pushes_every_contact_once_and_no_custom_event() -> None:
    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), *two_bookings())
    brevo = RecordingBrevo()
    summary = resync(ledger, brevo)
    assert (summary.checked, summary.changed, summary.calls, summary.failures) == (2, 2, 2, 0)
    assert brevo.contacts[ADA]["BOOKING_STATUS"] == "booked"
    assert brevo.lists == {ADA: {10}, BOB: {10}}
    assert brevo.events == []
    again = resync(ledger, brevo)
    assert (again.checked, again.changed, again.calls) == (2, 0, 0)


def test_a_contact_already_pushed_by_the_worker_needs_nothing() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    deliver(ledger, brevo, *two_bookings())
    before = len(brevo.upserts)
    assert resync(ledger, brevo).calls == 0
    assert len(brevo.upserts) == before


def test_a_moved_event_type_moves_contacts_and_leaves_hand_added_lists_alone() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    deliver(ledger, brevo, *two_bookings())
    brevo.lists[ADA].add(99)  # added in Brevo by hand: the connector never added it
    summary = resync(ledger, brevo, **MOVED)
    assert summary.changed == 2
    assert brevo.lists == {ADA: {12, 99}, BOB: {12}}
    assert len(brevo.events) == 2  # the bookings' own events, none from resync
    assert resync(ledger, brevo, **MOVED).calls == 0


def test_a_list_dropped_from_the_config_is_unlinked_when_the_connector_added_it() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    deliver(ledger, brevo, payloads.invitee_created(email=ADA))
    seed = payloads.SEED_CONFIG["connectors"]["calendly"]["event_mapping"]
    only_demo = Settings.model_validate(
        {
            **payloads.SEED_CONFIG,
            "connectors": {"calendly": {"event_mapping": {"demo": seed["demo"]}}},
        }
    )
    summary = Resync(ledger, only_demo.rules, brevo).run([ADA])
    assert summary.changed == 1
    assert brevo.lists[ADA] == set()
    assert brevo.updates == [(ADA, {}, (10,))]


def test_a_switch_turned_on_brings_the_held_back_cancellation_to_brevo() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    off: dict[str, Any] = {"connectors": {"calendly": {"sync": {"cancellations": False}}}}
    deliver(
        ledger,
        brevo,
        payloads.invitee_created(email=ADA),
        payloads.invitee_canceled(email=ADA),
        **off,
    )
    assert brevo.contacts[ADA]["BOOKING_STATUS"] == "booked"
    assert resync(ledger, brevo, **off).calls == 0
    summary = resync(ledger, brevo)
    assert summary.changed == 1
    assert brevo.contacts[ADA]["BOOKING_STATUS"] == "cancelled"
    assert [e[0] for e in brevo.events] == ["calendly_invitee_created"]


def test_a_plan_only_run_pushes_and_records_nothing() -> None:
    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), *two_bookings())
    summary = resync(ledger, None)
    assert (summary.changed, summary.calls, summary.dry_run) == (2, 0, True)
    assert [c["add_lists"] for c in summary.contacts] == [[10], [10]]
    assert ledger.last_pushed(ADA) is None


def test_a_refused_push_is_a_dead_letter_and_the_next_run_retries_it() -> None:
    ledger = MemoryLedger(MemoryTables())
    deliver(ledger, RecordingBrevo(dry_run=True), payloads.invitee_created(email=ADA))
    brevo = RecordingBrevo(fail_upserts=1, permanent=True)
    summary = resync(ledger, brevo)
    assert (summary.failures, len(summary.dead_letter_ids)) == (1, 1)
    [dead] = ledger.dead_letters(DeadLetterFilter())
    assert (dead.event_name, dead.reason) == ("resync", "resync_failed")
    assert ledger.last_pushed(ADA) is None
    assert resync(ledger, brevo).changed == 1
    assert brevo.lists[ADA] == {10}
    assert ledger.dead_letters(DeadLetterFilter()) == []  # resolved: marked replayed


def test_transient_failures_are_retried_before_giving_up() -> None:
    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), payloads.invitee_created(email=ADA))
    brevo = RecordingBrevo(fail_upserts=2)
    summary = resync(ledger, brevo)
    assert (summary.failures, summary.calls) == (0, 3)
    assert brevo.contacts[ADA]["BOOKING_STATUS"] == "booked"


def test_all_pushes_every_whole_projection_and_limit_stops_after_n_pushes() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    deliver(ledger, brevo, *two_bookings())
    assert resync(ledger, brevo, full=True).changed == 2
    run = Resync(ledger, payloads.settings().rules, brevo, full=True, limit=1)
    assert run.run(selected(ledger, None)).changed == 1


def test_resync_honours_the_event_type_filter() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    deliver(ledger, brevo, payloads.invitee_created(email=ADA))
    only_demo: dict[str, Any] = {
        "connectors": {"calendly": {"sync": {"event_types": {"include": ["demo"]}}}}
    }
    summary = resync(ledger, brevo, **only_demo)
    assert summary.changed == 1
    assert brevo.lists[ADA] == set()  # its only booking is of a type no longer pushed
    assert resync(ledger, brevo, **only_demo).calls == 0


def test_the_push_step_is_replaceable_and_records_like_the_default() -> None:
    """The seam a batch-endpoint pusher will use: given a pusher, resync calls only it."""
    from calendly_brevo.resync import ContactDiff

    ledger = MemoryLedger()
    deliver(ledger, RecordingBrevo(dry_run=True), *two_bookings())
    seen: list[ContactDiff] = []

    def pusher(change: ContactDiff) -> int:
        seen.append(change)
        return 1

    run = Resync(ledger, payloads.settings().rules, None, pusher=pusher, sleep=lambda _: None)
    summary = run.run(selected(ledger, None))
    assert (summary.changed, summary.calls, summary.dry_run) == (2, 2, False)
    assert [c.email for c in seen] == [ADA, BOB] and seen[0].add == (10,)
    assert resync(ledger, RecordingBrevo()).calls == 0  # recorded as pushed


def test_a_failed_push_of_a_contact_that_matches_by_now_is_resolved() -> None:
    """``--all`` failed for a contact already up to date: the next run has nothing to push
    for it and closes its dead letter instead of leaving it open for ever."""
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    deliver(ledger, brevo, payloads.invitee_created(email=ADA))
    failing = RecordingBrevo(fail_upserts=1, permanent=True)
    assert resync(ledger, failing, full=True).failures == 1
    assert len(ledger.dead_letters(DeadLetterFilter())) == 1
    assert resync(ledger, brevo).calls == 0
    assert ledger.dead_letters(DeadLetterFilter()) == []
