"""Invitee records and no-show marks: construction, JSON round trip, and the join laws."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calendly_brevo.events import event_from_dict
from calendly_brevo.state import (
    InviteeRecord,
    NoShowMark,
    booking_status,
    is_no_show,
    mark_from_event,
    merge_invitee,
    merge_no_show,
    record_from_event,
    stamp,
)
from tests import payloads as p


def record(env: dict[str, Any]) -> InviteeRecord:
    rec = record_from_event(event_from_dict(env))
    assert rec is not None
    return rec


def mark(env: dict[str, Any]) -> NoShowMark:
    m = mark_from_event(event_from_dict(env))
    assert m is not None
    return m


def roundtrip(rec: InviteeRecord) -> InviteeRecord:
    return InviteeRecord.from_dict(json.loads(json.dumps(rec.to_dict())))


# --- records from events -----------------------------------------------------------------------
def test_a_created_invitee_becomes_an_active_record_with_its_booking() -> None:
    rec = record(
        p.invitee_created(
            questions=[("Company", "Acme")],
            tracking={"utm_source": "newsletter"},
            join_url="https://zoom.us/j/1",
        )
    )
    assert rec.status == "active"
    assert rec.email == "test@example.com"
    assert rec.invitee_uri == p.invitee_uri()
    assert rec.event_type_uri == p.DEFAULT_EVENT_TYPE_URI
    assert rec.event_type_name == "15 Minute Meeting"
    assert rec.scheduled_event_uri == p.scheduled_event_uri()
    assert rec.start_time == p.DEFAULT_START
    assert rec.questions_and_answers == (("Company", "Acme"),)
    assert rec.tracking_dict == {"utm_source": "newsletter"}
    assert rec.join_url == "https://zoom.us/j/1"
    assert rec.cancel_reason is None


def test_a_canceled_invitee_becomes_a_canceled_record_with_the_reason() -> None:
    rec = record(p.invitee_canceled(reason="Double booked", canceler_type="host"))
    assert rec.status == "canceled"
    assert not rec.rescheduled
    assert rec.cancel_reason == "Double booked"
    assert rec.canceler_type == "host"
    assert rec.canceled_at == "2030-01-05T09:00:00.000000Z"


def test_an_empty_cancel_reason_is_no_reason() -> None:
    assert record(p.invitee_canceled(reason="")).cancel_reason is None
    assert record(p.invitee_canceled(reason=None)).cancel_reason is None


def test_the_canceled_half_of_a_reschedule_is_marked_rescheduled() -> None:
    old, new = p.reschedule_pair()
    old_rec, new_rec = record(old), record(new)
    assert old_rec.rescheduled and old_rec.canceled
    assert old_rec.new_invitee == new_rec.invitee_uri
    assert new_rec.old_invitee == old_rec.invitee_uri
    assert not new_rec.rescheduled


def test_invitee_canceled_is_canceled_even_if_the_payload_status_lags() -> None:
    env = p.with_payload(p.invitee_canceled(), status="active")
    assert record(env).status == "canceled"


def test_null_first_and_last_name_stay_null_and_name_is_kept() -> None:
    rec = record(p.invitee_created(first_name=None, last_name=None, name="Ada Lovelace"))
    assert (rec.first_name, rec.last_name, rec.name) == (None, None, "Ada Lovelace")


def test_a_payload_without_scheduled_event_still_gives_a_record() -> None:
    rec = record(p.invitee_created(with_scheduled_event=False))
    assert rec.event_type_uri is None
    assert rec.event_type_name is None
    assert rec.start_time is None
    assert rec.scheduled_event_uri == p.scheduled_event_uri()


def test_questions_are_ordered_by_position_and_empty_answers_dropped() -> None:
    questions = [
        {"question": "Second", "answer": "b", "position": 1},
        {"question": "Empty", "answer": "", "position": 2},
        {"question": "First", "answer": "a", "position": 0},
    ]
    assert record(p.invitee_created(questions=questions)).questions_and_answers == (
        ("First", "a"),
        ("Second", "b"),
    )


def test_events_without_an_invitee_give_no_record() -> None:
    assert record_from_event(event_from_dict(p.routing_form_submission())) is None
    assert record_from_event(event_from_dict(p.event_type_created())) is None


def test_a_record_round_trips_through_plain_json() -> None:
    rec = record(p.invitee_canceled(questions=[("Q", "A\nB")], tracking={"utm_medium": "email"}))
    data = rec.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert isinstance(data["questions_and_answers"], list)
    assert isinstance(data["tracking"], dict)
    assert roundtrip(rec) == rec


def test_from_dict_ignores_keys_from_a_newer_version() -> None:
    data = record(p.invitee_created()).to_dict() | {"field_from_the_future": 1}
    assert InviteeRecord.from_dict(data) == record(p.invitee_created())


# --- merging -----------------------------------------------------------------------------------
def test_canceled_beats_active_in_either_order() -> None:
    created, canceled = record(p.invitee_created()), record(p.invitee_canceled())
    assert merge_invitee(created, canceled).status == "canceled"
    assert merge_invitee(canceled, created).status == "canceled"
    assert merge_invitee(created, canceled) == merge_invitee(canceled, created)


def test_an_invitee_never_becomes_active_again_even_from_a_later_update() -> None:
    canceled = record(p.invitee_canceled())
    later_active = replace(record(p.invitee_created()), updated_at="2031-01-01T00:00:00Z")
    assert merge_invitee(canceled, later_active).status == "canceled"


def test_a_value_beats_null() -> None:
    bare = record(p.invitee_created(with_scheduled_event=False))
    full = replace(record(p.invitee_created()), updated_at="2029-01-01T00:00:00Z")
    merged = merge_invitee(bare, full)
    assert merged.event_type_uri == p.DEFAULT_EVENT_TYPE_URI
    assert merged.start_time == p.DEFAULT_START
    assert merged.updated_at == bare.updated_at


def test_on_a_real_conflict_the_later_update_wins() -> None:
    old = replace(record(p.invitee_created()), name="Old Name", updated_at="2030-01-01T00:00:00Z")
    new = replace(old, name="New Name", updated_at="2030-01-02T00:00:00+00:00")
    assert merge_invitee(old, new).name == "New Name"
    assert merge_invitee(new, old).name == "New Name"


def test_a_conflict_at_the_same_time_is_broken_deterministically() -> None:
    a = replace(record(p.invitee_created()), name="Alpha")
    b = replace(a, name="Beta")
    assert merge_invitee(a, b) == merge_invitee(b, a)


def test_a_value_filled_in_from_an_older_record_keeps_its_older_stamp() -> None:
    a = replace(record(p.invitee_created()), name="A", updated_at="2030-01-01T00:00:00Z")
    b = replace(a, name=None, updated_at="2030-01-03T00:00:00Z")
    c = replace(a, name="C", updated_at="2030-01-02T00:00:00Z")
    assert merge_invitee(merge_invitee(a, b), c).name == "C"
    assert merge_invitee(a, merge_invitee(b, c)).name == "C"
    assert roundtrip(merge_invitee(a, b)).field_stamp("name") == stamp(a.updated_at)


def test_merging_records_of_two_invitees_is_refused() -> None:
    with pytest.raises(ValueError, match="different invitees"):
        merge_invitee(
            record(p.invitee_created()),
            record(p.invitee_created(invitee_uri=p.invitee_uri("E", "OTHER"))),
        )


def test_merging_with_nothing_is_the_record() -> None:
    rec = record(p.invitee_created())
    assert merge_invitee(None, rec) is rec
    assert merge_invitee(None, replace(rec, name="")).name is None


# --- hypothesis: join laws ---------------------------------------------------------------------
TIMES = st.sampled_from(
    [
        None,
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00.000000Z",
        "2030-01-02T00:00:00+00:00",
        "2030-01-03T00:00:00.5Z",
        "garbage",
    ]
)
TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "b", "Ada Lovelace"]))
URI = p.invitee_uri()

records_st = st.builds(
    InviteeRecord,
    invitee_uri=st.just(URI),
    email=st.sampled_from(["a@example.com", "b@example.com"]),
    status=st.sampled_from(["active", "canceled"]),
    rescheduled=st.booleans(),
    new_invitee=st.one_of(st.none(), st.just(p.invitee_uri("E2", "I2"))),
    name=TEXT,
    first_name=TEXT,
    event_type_name=TEXT,
    start_time=TIMES,
    updated_at=TIMES,
    cancel_reason=TEXT,
    questions_and_answers=st.sampled_from([(), (("Company", "Acme"),), (("Company", "Beta"),)]),
    tracking=st.sampled_from([(), (("utm_source", "x"),)]),
).map(lambda r: InviteeRecord.from_dict(r.to_dict()))


def merged_records() -> st.SearchStrategy[InviteeRecord]:
    """Plain records and records that are already merges (stamps set)."""
    return st.one_of(records_st, st.builds(merge_invitee, records_st, records_st))


@settings(max_examples=150, deadline=None)
@given(merged_records(), merged_records())
def test_merge_invitee_is_commutative(a: InviteeRecord, b: InviteeRecord) -> None:
    assert merge_invitee(a, b) == merge_invitee(b, a)


@settings(max_examples=150, deadline=None)
@given(merged_records(), merged_records(), merged_records())
def test_merge_invitee_is_associative(a: InviteeRecord, b: InviteeRecord, c: InviteeRecord) -> None:
    assert merge_invitee(merge_invitee(a, b), c) == merge_invitee(a, merge_invitee(b, c))


@settings(max_examples=100, deadline=None)
@given(merged_records(), merged_records())
def test_merge_invitee_is_idempotent_and_survives_json(a: InviteeRecord, b: InviteeRecord) -> None:
    assert merge_invitee(a, a) == a
    ab = merge_invitee(a, b)
    assert merge_invitee(ab, b) == ab
    assert roundtrip(ab) == ab
    assert merge_invitee(roundtrip(a), roundtrip(b)) == ab


# --- no-show marks -----------------------------------------------------------------------------
def test_a_no_show_event_gives_a_created_mark() -> None:
    m = mark(p.no_show_created(no_show_uri=p.no_show_uri("A")))
    assert m == NoShowMark(
        p.no_show_uri("A"),
        p.invitee_uri(),
        created=True,
        deleted=False,
        marked_at="2030-01-10T16:00:00.000000Z",
    )


def test_calendlys_own_no_show_deleted_example_gives_a_deletion_without_uri() -> None:
    m = mark(p.example("invitee_no_show.deleted"))
    assert m.no_show_uri is None
    assert m.deleted and not m.created
    assert m.marked_at == "2020-11-23T17:51:19.000000Z"


def test_a_plain_invitee_event_gives_no_mark_unless_it_carries_one() -> None:
    assert mark_from_event(event_from_dict(p.invitee_created())) is None
    replay = p.with_payload(
        p.invitee_created(), no_show={"uri": p.no_show_uri(), "created_at": "2030-01-10T16:00:00Z"}
    )
    assert mark(replay).created


def test_a_deleted_mark_stays_deleted_whatever_the_order() -> None:
    created = mark(p.no_show_created())
    deleted = mark(p.no_show_deleted(no_show_uri=p.no_show_uri()))
    assert merge_no_show(created, deleted) == merge_no_show(deleted, created)
    assert merge_no_show(created, deleted).deleted
    assert not is_no_show(p.invitee_uri(), [deleted, created])


def test_an_anonymous_deletion_clears_older_marks_but_not_a_later_re_mark() -> None:
    first = mark(
        p.no_show_created(no_show_uri=p.no_show_uri("A"), marked_at="2030-01-10T16:00:00Z")
    )
    unmark = mark(p.no_show_deleted(deleted_at="2030-01-10T17:00:00Z"))
    again = mark(
        p.no_show_created(no_show_uri=p.no_show_uri("B"), marked_at="2030-01-10T18:00:00Z")
    )
    assert is_no_show(p.invitee_uri(), [first])
    assert not is_no_show(p.invitee_uri(), [unmark, first])
    assert is_no_show(p.invitee_uri(), [again, unmark, first])


def test_marks_round_trip_through_json() -> None:
    m = mark(p.no_show_created())
    assert NoShowMark.from_dict(json.loads(json.dumps(m.to_dict()))) == m


marks_st = st.builds(
    NoShowMark,
    no_show_uri=st.just(p.no_show_uri()),
    invitee_uri=st.just(URI),
    created=st.booleans(),
    deleted=st.booleans(),
    marked_at=TIMES,
)


@settings(max_examples=100, deadline=None)
@given(marks_st, marks_st, marks_st)
def test_merge_no_show_is_a_join(a: NoShowMark, b: NoShowMark, c: NoShowMark) -> None:
    assert merge_no_show(a, b) == merge_no_show(b, a)
    assert merge_no_show(merge_no_show(a, b), c) == merge_no_show(a, merge_no_show(b, c))
    assert merge_no_show(a, a) == a


# --- booking status ----------------------------------------------------------------------------
def test_booking_status_of_each_kind_of_booking() -> None:
    old, _ = p.reschedule_pair()
    no_show = mark(p.no_show_created())
    assert booking_status(record(p.invitee_created()), []) == "booked"
    assert booking_status(record(p.invitee_created()), [no_show]) == "no_show"
    assert booking_status(record(p.invitee_canceled()), []) == "cancelled"
    assert booking_status(record(p.invitee_canceled()), [no_show]) == "cancelled"
    assert booking_status(record(old), []) == "rescheduled"


def test_a_mark_of_another_invitee_does_not_count() -> None:
    other = mark(p.no_show_created(invitee_uri=p.invitee_uri("E", "OTHER")))
    assert booking_status(record(p.invitee_created()), [other]) == "booked"
