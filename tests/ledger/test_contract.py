"""The ledger contract: the same cases on every implementation (in memory, SQLite, Postgres).

What the pipeline relies on: "already processed" (not "already seen") dedup, concurrent
duplicates applied once, effects that survive an outage, the state merge, dead letters and their
replay, tombstones and the last pushed projections.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from calendly_brevo.ledger import (
    Arrival,
    Claim,
    DeadLetterFilter,
    Failure,
    Ledger,
    PushedProjection,
    record_durably,
)
from calendly_brevo.state import InviteeRecord, NoShowMark
from tests.ledger.conftest import A, B, Opener, mark, record


def claim(
    ledger: Ledger,
    event_id: str = "ev1",
    *,
    email: str | None = A,
    state: tuple[InviteeRecord | None, NoShowMark | None] | None = None,
    payload: str = '{"n": 1}',
) -> Claim:
    uri = "https://api.calendly.com/invitees/1"
    new = Arrival(event_id, "invitee.created", uri, email, payload, "webhook", None)
    return ledger.claim(new, state)


def dead_letter(ledger: Ledger, event_id: str | None, error: str = "Boom", **kw: Any) -> int:
    failure = Failure(event_id, "invitee.created", "error", error, 1, "{}", "webhook", None)
    return ledger.dead_letter(replace(failure, **kw))


def status(ledger: Ledger, event_id: str = "ev1") -> str | None:
    row = ledger.event(event_id)
    return row.status if row is not None else None


# -- claims and effects --------------------------------------------------------------------------
def test_every_claim_counts_an_attempt_and_done_means_duplicate(ledger: Ledger) -> None:
    first = claim(ledger)
    assert (first.duplicate, first.attempts, first.effects, first.interrupted) == (
        False,
        1,
        {},
        False,
    )
    row = ledger.event("ev1")
    assert row is not None and (row.status, row.payload) == ("processing", '{"n": 1}')

    again = claim(ledger)  # left "processing": the worker before died
    assert (again.duplicate, again.attempts, again.interrupted) == (False, 2, True)

    ledger.record_effect("ev1", {**again.effects, "contact": True})
    ledger.finish("ev1", "failed", "Boom: no")
    row = ledger.event("ev1")
    assert row is not None and (row.status, row.last_error) == ("failed", "Boom: no")

    third = claim(ledger)
    assert (third.duplicate, third.attempts, third.effects, third.interrupted) == (
        False,
        3,
        {"contact": True},
        False,
    )
    ledger.record_effect("ev1", {"event": "calendly_invitee_created"}, "applied")
    done = ledger.event("ev1")
    assert done is not None
    assert (done.status, done.last_error, done.attempts) == ("applied", None, 3)
    assert done.applied_at is not None
    assert done.effects == {"event": "calendly_invitee_created"}  # the caller's effects win

    dup = claim(ledger, state=(record("u1", A), None))
    assert (dup.duplicate, dup.attempts, dup.effects) == (
        True,
        3,
        {"event": "calendly_invitee_created"},
    )
    assert dup.records is None and dup.record is None
    assert ledger.contact_state(A) == ([], [])  # a duplicate stores no state


def test_ignored_is_done_and_dead_is_claimed_again(ledger: Ledger) -> None:
    claim(ledger, "ign")
    ledger.finish("ign", "ignored")
    row = ledger.event("ign")
    assert row is not None and row.applied_at is not None
    assert claim(ledger, "ign").duplicate

    claim(ledger, "dead")
    dead_letter(ledger, "dead")
    assert status(ledger, "dead") == "dead"
    replay = claim(ledger, "dead", payload="other")
    assert (replay.duplicate, replay.attempts, replay.interrupted) == (False, 2, False)
    row = ledger.event("dead")
    assert row is not None and row.payload == '{"n": 1}'  # the first payload is kept


def test_dry_run_and_suppressed_are_done_and_keep_their_reason(ledger: Ledger) -> None:
    claim(ledger, "dry")
    ledger.finish("dry", "dry_run")
    claim(ledger, "off")
    ledger.finish("off", "suppressed", "sync_switch")
    assert claim(ledger, "dry").duplicate and claim(ledger, "off").duplicate
    row = ledger.event("off")
    assert row is not None and (row.status, row.last_error) == ("suppressed", "sync_switch")
    assert ledger.settled(["dry", "off"]) == {"dry", "off"}


def test_effects_are_stored_as_given_and_finish_in_the_same_write(ledger: Ledger) -> None:
    got = claim(ledger)
    ledger.record_effect("ev1", {**got.effects, "contact": True})
    row = ledger.event("ev1")
    assert row is not None and (row.status, row.effects) == ("processing", {"contact": True})
    record_durably(ledger, "ev1", {"contact": True, "event": "x"}, "applied")
    row = ledger.event("ev1")
    assert row is not None and (row.status, row.effects) == (
        "applied",
        {"contact": True, "event": "x"},
    )
    assert ledger.event("nothing") is None


def test_settled_events_are_done_or_dead(ledger: Ledger) -> None:
    for event_id in ("applied", "ignored", "dead", "failed", "processing"):
        claim(ledger, event_id)
    ledger.record_effect("applied", {"event": "x"}, "applied")
    ledger.finish("ignored", "ignored")
    ledger.finish("failed", "failed", "Boom")
    dead_letter(ledger, "dead")
    asked = ["applied", "ignored", "dead", "failed", "processing", "unknown"]
    assert ledger.settled(asked) == {"applied", "ignored", "dead"}
    assert ledger.settled([]) == set()


def test_racing_claims_apply_once(ledger: Ledger) -> None:
    """Eight threads deliver the same event at once; each takes the contact lock, claims, and
    finishes what it claimed. One applies, seven see a duplicate."""
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def deliver() -> None:
        barrier.wait(10)
        with ledger.contact_lock(A):
            got = claim(ledger, "race", state=(record("u1", A), None))
            if not got.duplicate:
                ledger.record_effect("race", {"contact": True})
                ledger.record_effect("race", {"contact": True, "event": "x"}, "applied")
        outcomes.append("duplicate" if got.duplicate else "applied")

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 7
    row = ledger.event("race")
    assert row is not None and (row.status, row.attempts) == ("applied", 1)
    assert [r.invitee_uri for r in ledger.contact_state(A)[0]] == ["u1"]


def test_the_contact_lock_serialises_one_contact(ledger: Ledger) -> None:
    inside = {"now": 0, "max": 0}
    guard = threading.Lock()

    def work(i: int) -> None:
        with ledger.contact_lock(A):
            with guard:
                inside["now"] += 1
                inside["max"] = max(inside["max"], inside["now"])
            got = claim(ledger, f"t{i}", state=(record(f"u{i}", A), None))
            ledger.record_effect(f"t{i}", {**got.effects, "event": "x"}, "applied")
            with guard:
                inside["now"] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert inside["max"] == 1
    assert len(ledger.contact_state(A)[0]) == 6


def test_an_unfinished_claim_is_processed_again_after_a_restart(opened: Opener) -> None:
    claim(opened())  # the worker dies here: nothing finishes the claim
    again = claim(opened())
    assert (again.duplicate, again.attempts, again.interrupted) == (False, 2, True)


def test_effects_recorded_before_an_outage_are_not_repeated_after_it(opened: Opener) -> None:
    before = opened()
    got = claim(before, state=(record("u1", A), None))
    record_durably(before, "ev1", {**got.effects, "contact": True})
    # The outage: the worker loses its database and comes back on a new connection.
    after = opened()
    resumed = claim(after, state=(record("u1", A), None))
    assert (resumed.duplicate, resumed.interrupted, resumed.effects) == (
        False,
        True,
        {"contact": True},
    )
    record_durably(after, "ev1", {**resumed.effects, "event": "x"}, "applied")
    dup = claim(opened())
    assert dup.duplicate and dup.effects == {"contact": True, "event": "x"}


# -- invitee state ---------------------------------------------------------------------------------
#: (event id, email, record, mark): one contact's events, one of another contact's, and an
#: invitee that moves from one email to the other.
STEPS: list[tuple[str, str, InviteeRecord | None, NoShowMark | None]] = [
    ("s1", A, record("u1", A, name="Ann", start_time="2024-06-01T09:00:00Z"), None),
    ("s2", A, record("u2", A, 2, name="Ann L"), mark("u2", "ns1", created=True)),
    ("s3", B, record("u3", B, name="Bob"), mark("u3", "ns3", created=True)),
    ("s4", A, record("u1", A, 3, status="canceled", cancel_reason="busy"), None),
    ("s5", A, record("u2", A, 1, name="Old name", timezone="Europe/Paris"), None),
    ("s6", A, record("u2", A, 2), mark("u2", "ns1", 3, deleted=True)),
    ("s7", A, record("u2", A, 2), mark("u2", None, 4, deleted=True)),
    ("s8", B, record("u1", B, 5), mark("u1", "ns9", 5, created=True)),
    ("s9", A, record("u4", A, 5), None),
]


def by_uri(records: list[InviteeRecord] | None) -> list[InviteeRecord]:
    return sorted(records or [], key=lambda r: r.invitee_uri)


def by_key(marks: list[NoShowMark] | None) -> list[NoShowMark]:
    return sorted(marks or [], key=lambda m: m.key)


def stored(ledger: Ledger, email: str, uri: str) -> InviteeRecord:
    [found] = [r for r in ledger.contact_state(email)[0] if r.invitee_uri == uri]
    return found


def test_the_claim_merges_the_state_and_reads_it_back(ledger: Ledger) -> None:
    for event_id, email, rec, mk in STEPS:
        got = claim(ledger, event_id, email=email, state=(rec, mk))
        records, marks = ledger.contact_state(email)
        assert by_uri(got.records) == by_uri(records), event_id
        assert by_key(got.marks) == by_key(marks), event_id
        if rec is not None and got.record is not None:
            assert got.record == stored(ledger, got.record.email, rec.invitee_uri), event_id
    # spot checks of the end state (the merge rules themselves are tested in test_state.py)
    assert stored(ledger, B, "u1").status == "canceled"
    assert stored(ledger, A, "u2").name == "Ann L"
    assert stored(ledger, A, "u2").timezone == "Europe/Paris"
    records, marks = ledger.contact_state(A)
    assert [r.invitee_uri for r in by_uri(records)] == ["u2", "u4"]
    assert [(m.no_show_uri, m.created, m.deleted) for m in by_key(marks)] == [
        (None, False, True),
        ("ns1", True, True),
    ]
    records, marks = ledger.contact_state(B)
    assert [r.invitee_uri for r in by_uri(records)] == ["u1", "u3"]
    assert [m.no_show_uri for m in by_key(marks)] == ["ns9", "ns3"]


def test_a_replayed_state_changes_nothing(ledger: Ledger) -> None:
    for event_id, email, rec, mk in STEPS:
        claim(ledger, event_id, email=email, state=(rec, mk))
    before = {e: ledger.contact_state(e) for e in (A, B)}
    for event_id, email, rec, mk in reversed(STEPS):
        ledger.finish(event_id, "failed")
        claim(ledger, event_id, email=email, state=(rec, mk))
    after = {e: ledger.contact_state(e) for e in (A, B)}
    for e in (A, B):
        assert by_uri(after[e][0]) == by_uri(before[e][0])
        assert by_key(after[e][1]) == by_key(before[e][1])


def test_state_is_only_merged_with_an_email(ledger: Ledger) -> None:
    got = claim(ledger, email=None, state=(record("u1", A), None))
    assert got.records is None and got.marks is None
    assert ledger.contact_state(A) == ([], [])


# -- dead letters ----------------------------------------------------------------------------------
def test_an_event_has_one_open_dead_letter_until_it_is_replayed(ledger: Ledger) -> None:
    claim(ledger, "ev1")
    first = dead_letter(ledger, "ev1", "Boom for ada@example.com", attempts=1)
    again = dead_letter(ledger, "ev1", "Boom again", reason="brevo_permanent", attempts=2)
    assert again == first
    [row] = ledger.dead_letters(DeadLetterFilter())
    assert (row.id, row.event_id, row.reason, row.error, row.attempts) == (
        first,
        "ev1",
        "brevo_permanent",
        "Boom again",
        2,
    )
    assert ledger.open_dead_letters() == 1

    ledger.mark_replayed(first)
    assert ledger.dead_letters(DeadLetterFilter()) == []
    assert ledger.open_dead_letters() == 0
    [replayed] = ledger.dead_letters(DeadLetterFilter(include_replayed=True))
    assert replayed.replayed_at is not None
    assert ledger.dead_letters(DeadLetterFilter(ids=(first,))) == [replayed]

    # The replay fails again: a new open dead letter, the replayed one stays as it was.
    third = dead_letter(ledger, "ev1", "Boom a third time")
    assert third != first
    assert [r.id for r in ledger.dead_letters(DeadLetterFilter())] == [third]


def test_dead_letter_errors_are_scrubbed_and_events_marked_dead(ledger: Ledger) -> None:
    claim(ledger, "ev1")
    dl = dead_letter(ledger, "ev1", "no contact ada@example.com " + "x" * 5000)
    found = ledger.dead_letter_by_id(dl)
    assert found is not None
    assert "ada@example.com" not in found.error and len(found.error) <= 4000
    row = ledger.event("ev1")
    assert row is not None and row.status == "dead" and row.last_error == found.error
    assert ledger.dead_letter_by_id(dl + 1000) is None
    unparsed = dead_letter(ledger, None, "not json", reason="not_json", payload="{nope")
    other = dead_letter(ledger, None, "not json", reason="not_json", payload="{nope")
    assert unparsed != other  # without an event id, every failure is its own row


def test_dead_letters_filter_and_purge(ledger: Ledger) -> None:
    a = dead_letter(ledger, "a", "Brevo said 400", reason="brevo_permanent")
    b = dead_letter(ledger, "b", "Boom", event_name="invitee.canceled")
    c = dead_letter(ledger, "c", "Boom", reason="unmappable")

    def ids(f: DeadLetterFilter) -> list[int]:
        return [r.id for r in ledger.dead_letters(f)]

    assert ids(DeadLetterFilter()) == [a, b, c]
    assert ids(DeadLetterFilter(event="invitee.canceled")) == [b]
    assert ids(DeadLetterFilter(error="400")) == [a]
    assert ids(DeadLetterFilter(error="UNMAPPABLE")) == [c]  # reason too, any case
    assert ids(DeadLetterFilter(since=datetime.now(UTC) + timedelta(hours=1))) == []
    assert ids(DeadLetterFilter(since=datetime.now(UTC) - timedelta(hours=1))) == [a, b, c]
    assert len(ledger.dead_letters(DeadLetterFilter(), limit=2)) == 2
    assert ledger.purge_dead_letters(DeadLetterFilter(ids=(a, c))) == 2
    assert ids(DeadLetterFilter()) == [b]


# -- tombstones and projections --------------------------------------------------------------------
def test_tombstones_recognise_a_forgotten_persons_past_events(ledger: Ledger) -> None:
    assert not ledger.is_tombstoned(email=A, invitee_uri="u1")
    ledger.add_tombstone(A, ["u1", "u2"])
    ledger.add_tombstone(A, ["u2", "u3"])  # forgetting twice is fine
    assert ledger.is_tombstoned(email=A)
    assert all(ledger.is_tombstoned(invitee_uri=u) for u in ("u1", "u2", "u3"))
    assert not ledger.is_tombstoned(invitee_uri="u9")  # a new booking after forget
    assert not ledger.is_tombstoned(email=B)
    assert not ledger.is_tombstoned()


def test_the_last_pushed_projection_round_trips(opened: Opener) -> None:
    ledger = opened()
    assert ledger.last_pushed(A) is None
    first = PushedProjection(
        email=A,
        attributes={"FIRSTNAME": "Ann", "BOOKING_STATUS": "booked", "N": 2},
        list_ids=(7, 3),
        projection_hash="h1",
        mapping_fingerprint="f1",
        pushed_at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        event_id="ev1",
    )
    ledger.record_pushed(first)
    assert opened().last_pushed(A) == first
    second = PushedProjection(A, {"BOOKING_STATUS": "cancelled"}, (), "h2", "f2", first.pushed_at)
    ledger.record_pushed(second)
    assert opened().last_pushed(A) == second
    assert ledger.last_pushed(B) is None


def test_contacts_pushed_under_another_mapping_are_counted_stale(opened: Opener) -> None:
    ledger = opened()
    assert ledger.stale_pushed("now") == 0
    for email, fingerprint in ((A, "old"), (B, "now")):
        ledger.record_pushed(
            PushedProjection(email, {}, (), "h", fingerprint, datetime(2024, 5, 1, tzinfo=UTC))
        )
    assert opened().stale_pushed("now") == 1
    assert opened().stale_pushed("newer") == 2


def test_contacts_are_every_stored_or_pushed_email_in_keyset_pages(opened: Opener) -> None:
    ledger = opened()
    assert ledger.contacts() == []
    claim(ledger, "e1", email=A, state=(record(uri="u1", email=A), None))
    claim(ledger, "e2", email=B, state=(record(uri="u2", email=B), None))
    claim(ledger, "e3", email=A, state=(record(uri="u3", email=A), None))
    pushed = PushedProjection("c@example.com", {}, (), "h", "f", datetime.now(UTC))
    ledger.record_pushed(pushed)
    everyone = sorted({A, B, "c@example.com"})
    assert ledger.contacts() == everyone
    assert ledger.contacts(limit=2) == everyone[:2]
    assert ledger.contacts(after=everyone[0]) == everyone[1:]
