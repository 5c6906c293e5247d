"""Brevo effects: contact projection (order independence), custom events, switches."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calendly_brevo.config import Settings
from calendly_brevo.events import event_from_dict, parse_envelope, read_event
from calendly_brevo.projection import (
    BrevoEvent,
    ContactProjection,
    custom_event,
    effects_enabled,
    project_contact,
    routing_form_contact,
)
from calendly_brevo.state import (
    InviteeRecord,
    NoShowMark,
    mark_from_event,
    merge_invitee,
    merge_no_show,
    record_from_event,
)
from tests import payloads as p
from tests.fakes.openapi_validation import load_spec

ANN = "ann@example.com"
BOB = "bob@example.com"
MOVES = {
    "brevo": {
        "list_moves": {
            "on_cancel": {"add": [20], "remove": [10]},
            "on_no_show": {"add": [30]},
        }
    }
}


def fold(events: Iterable[dict[str, Any]]) -> tuple[list[InviteeRecord], list[NoShowMark]]:
    """What the worker stores: one merged record per invitee URI and one mark per no-show,
    kept as JSON between events."""
    records: dict[str, dict[str, Any]] = {}
    marks: dict[str, dict[str, Any]] = {}
    for env_dict in events:
        env = read_event(parse_envelope(p.body(env_dict)))
        rec = record_from_event(env)
        if rec is not None:
            old = records.get(rec.invitee_uri)
            merged = merge_invitee(InviteeRecord.from_dict(old) if old else None, rec)
            records[rec.invitee_uri] = json.loads(json.dumps(merged.to_dict()))
        mark = mark_from_event(env)
        if mark is not None:
            key = json.dumps(mark.key)
            old_mark = marks.get(key)
            merged_mark = merge_no_show(NoShowMark.from_dict(old_mark) if old_mark else None, mark)
            marks[key] = json.loads(json.dumps(merged_mark.to_dict()))
    return (
        [InviteeRecord.from_dict(r) for r in records.values()],
        [NoShowMark.from_dict(m) for m in marks.values()],
    )


def project(
    events: Sequence[dict[str, Any]], email: str = p.DEFAULT_EMAIL, cfg: Settings | None = None
) -> ContactProjection:
    records, marks = fold(events)
    return project_contact(email, records, marks, (cfg or p.settings()).rules)


def event_for(env_dict: dict[str, Any], cfg: Settings | None = None) -> BrevoEvent | None:
    event = event_from_dict(env_dict)
    return custom_event(event, record_from_event(event), (cfg or p.settings()).rules)


# --- the semantics table, row by row -----------------------------------------------------------
def test_invitee_created_books_the_contact_and_adds_the_event_types_list() -> None:
    contact = project([p.invitee_created(questions=[("Company", "Acme")])])
    assert contact.email == p.DEFAULT_EMAIL
    assert contact.status == "booked"
    assert contact.attributes == {
        "FIRSTNAME": "John",
        "LASTNAME": "Doe",
        "COMPANY": "Acme",
        "BOOKING_STATUS": "booked",
        "MEETING_DATE": "2030-01-10",
        "CALENDLY_EVENT_TYPE": "15 Minute Meeting",
    }
    assert contact.list_ids == (10,)
    assert contact.unlink_list_ids == (11,)
    event = event_for(p.invitee_created())
    assert event is not None
    assert event.name == "calendly_invitee_created"
    assert event.email == p.DEFAULT_EMAIL


def test_invitee_created_with_old_invitee_sends_the_rescheduled_event() -> None:
    _, created = p.reschedule_pair()
    event = event_for(created)
    assert event is not None
    assert event.name == "calendly_invitee_rescheduled"
    assert event.properties["old_invitee"] == p.invitee_uri("EVENT0001", "INVITEE0001")


def test_a_plain_cancel_makes_the_contact_cancelled_and_sends_the_canceled_event() -> None:
    contact = project([p.invitee_created(), p.invitee_canceled()])
    assert contact.status == "cancelled"
    assert contact.attributes["BOOKING_STATUS"] == "cancelled"
    event = event_for(p.invitee_canceled(reason="Sick", canceler_type="invitee"))
    assert event is not None
    assert event.name == "calendly_invitee_canceled"
    assert event.properties["cancel_reason"] == "Sick"
    assert event.properties["canceler_type"] == "invitee"


def test_a_cancel_with_an_empty_reason_has_no_reason_property() -> None:
    event = event_for(p.invitee_canceled(reason="", canceler_type="host"))
    assert event is not None
    assert "cancel_reason" not in event.properties
    assert event.properties["canceler_type"] == "host"


def test_cancelling_one_of_two_bookings_leaves_the_contact_booked_for_the_other() -> None:
    other = p.invitee_uri("EVENT0002", "INVITEE0002")
    contact = project(
        [
            p.invitee_created(),
            p.invitee_created(invitee_uri=other, start_time="2030-02-01T10:00:00Z"),
            p.invitee_canceled(invitee_uri=other, start_time="2030-02-01T10:00:00Z"),
        ]
    )
    assert contact.status == "booked"
    assert contact.primary_invitee_uri == p.invitee_uri()
    assert contact.attributes["MEETING_DATE"] == "2030-01-10"


def test_the_cancel_half_of_a_reschedule_is_no_cancellation_and_sends_nothing() -> None:
    canceled, created = p.reschedule_pair()
    assert event_for(canceled) is None
    alone = project([p.invitee_created(), canceled])
    assert alone.status == "rescheduled"
    assert alone.attributes["BOOKING_STATUS"] == "rescheduled"
    both = project([p.invitee_created(), canceled, created])
    assert both.status == "booked"
    assert both.attributes["MEETING_DATE"] == "2030-01-17"


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_reschedule_in_either_order_ends_booked_on_the_new_date(order: tuple[int, int]) -> None:
    pair = p.reschedule_pair()
    contact = project([p.invitee_created(), *(pair[i] for i in order)])
    assert contact.status == "booked"
    assert contact.primary_invitee_uri == p.invitee_uri("EVENT0002", "INVITEE0002")


def test_a_reschedule_to_an_earlier_date_still_supersedes_the_old_booking() -> None:
    canceled, created = p.reschedule_pair(new_start="2030-01-08T10:00:00Z")
    contact = project([created, canceled])
    assert contact.status == "booked"
    assert contact.attributes["MEETING_DATE"] == "2030-01-08"


def test_a_moved_booking_that_is_then_cancelled_is_cancelled_not_rescheduled() -> None:
    new_uri = p.invitee_uri("EVENT0002", "INVITEE0002")
    canceled, created = p.reschedule_pair(new_invitee_uri=new_uri, new_start="2030-01-08T10:00:00Z")
    later_cancel = p.invitee_canceled(
        invitee_uri=new_uri, start_time="2030-01-08T10:00:00Z", canceled_at="2030-01-06T00:00:00Z"
    )
    assert project([later_cancel, canceled, created]).status == "cancelled"
    no_show = p.no_show_created(invitee_uri=new_uri, start_time="2030-01-08T10:00:00Z")
    assert project([no_show, canceled, created]).status == "no_show"


def test_a_no_show_marks_the_contact_and_its_deletion_restores_booked() -> None:
    marked = project([p.invitee_created(), p.no_show_created()])
    assert marked.status == "no_show"
    event = event_for(p.no_show_created())
    assert event is not None
    assert event.name == "calendly_invitee_no_show"
    assert event.properties["no_show_uri"] == p.no_show_uri()
    restored = project([p.invitee_created(), p.no_show_created(), p.no_show_deleted()])
    assert restored.status == "booked"


def test_no_show_deleted_sends_an_event_only_when_configured() -> None:
    assert event_for(p.no_show_deleted()) is None
    cfg = p.settings(brevo={"events": {"no_show_deleted": "calendly_no_show_removed"}})
    event = event_for(p.no_show_deleted(), cfg)
    assert event is not None
    assert event.name == "calendly_no_show_removed"


def test_a_no_show_on_one_booking_does_not_hide_another_active_booking() -> None:
    other = p.invitee_uri("EVENT0002", "INVITEE0002")
    contact = project(
        [p.invitee_created(), p.invitee_created(invitee_uri=other), p.no_show_created()]
    )
    assert contact.status == "booked"
    assert contact.primary_invitee_uri == other


def test_routing_form_submission_upserts_only_when_configured() -> None:
    env = event_from_dict(
        p.routing_form_submission(
            answers=[
                ("Email address", "Lead@Example.com"),
                ("Full name", "Grace Hopper"),
                ("Company", "Navy"),
                ("Phone", "+1 212-555-0199"),
            ],
            tracking={"utm_source": "ads"},
        )
    )
    assert routing_form_contact(env, p.settings().rules) is None
    cfg = p.settings(
        brevo={"upsert_routing_form_submitters": True},
        field_mapping={"tracking": {"utm_source": "UTM_SOURCE"}},
    )
    contact = routing_form_contact(env, cfg.rules)
    assert contact == ContactProjection(
        email="lead@example.com",
        attributes={
            "FIRSTNAME": "Grace",
            "LASTNAME": "Hopper",
            "COMPANY": "Navy",
            "SMS": "+12125550199",
            "UTM_SOURCE": "ads",
        },
    )


def test_a_routing_form_without_an_email_answer_upserts_nothing() -> None:
    env = event_from_dict(p.routing_form_submission(answers=[("Industry", "IT")]))
    cfg = p.settings(brevo={"upsert_routing_form_submitters": True})
    assert routing_form_contact(env, cfg.rules) is None


def test_a_routing_form_event_is_sent_only_when_configured() -> None:
    assert event_for(p.routing_form_submission()) is None
    cfg = p.settings(brevo={"events": {"routing_form_submitted": "calendly_routing_form"}})
    event = event_for(p.routing_form_submission(), cfg)
    assert event is not None
    assert event.name == "calendly_routing_form"
    assert event.email == "lead@example.com"
    assert event.properties["result_type"] == "event_type"


def test_ignored_events_have_no_effects() -> None:
    assert event_for(p.event_type_created()) is None
    assert effects_enabled("event_type.created", p.settings().rules) == (False, False)


# --- group events, several emails --------------------------------------------------------------
def test_every_invitee_of_a_group_event_is_their_own_booked_contact() -> None:
    events = p.group_event([ANN, BOB, "cy@example.com"])
    records, marks = fold(events)
    for i, email in enumerate([ANN, BOB, "cy@example.com"]):
        contact = project_contact(email, records, marks, p.settings().rules)
        assert contact.status == "booked"
        assert contact.attributes["FIRSTNAME"] == "Guest"
        assert contact.attributes["LASTNAME"] == str(i)


def test_records_of_other_emails_are_ignored() -> None:
    records, marks = fold([p.invitee_created(email=BOB), p.invitee_canceled(email=BOB)])
    contact = project_contact(ANN, records, marks, p.settings().rules)
    assert contact == ContactProjection(email=ANN, attributes={})


def test_the_email_key_is_case_insensitive() -> None:
    records, marks = fold([p.invitee_created(email="Ann@Example.COM")])
    assert (
        project_contact(" ANN@example.com", records, marks, p.settings().rules).status == "booked"
    )


# --- attributes across bookings ----------------------------------------------------------------
def test_person_attributes_come_from_the_latest_booking_and_fill_in_from_older_ones() -> None:
    older = p.invitee_created(
        questions=[("Company", "OldCo"), ("Role", "CTO")], created_at="2030-01-01T00:00:00Z"
    )
    newer = p.invitee_created(
        invitee_uri=p.invitee_uri("EVENT0002", "INVITEE0002"),
        questions=[("Company", "NewCo")],
        name="Johnny Doe",
        created_at="2030-01-02T00:00:00Z",
        start_time="2030-01-05T10:00:00Z",
    )
    contact = project([newer, older])
    assert contact.attributes["COMPANY"] == "NewCo"
    assert contact.attributes["JOB_TITLE"] == "CTO"
    assert contact.attributes["FIRSTNAME"] == "Johnny"
    # ... while the booking attributes come from the active booking that starts last.
    assert contact.attributes["MEETING_DATE"] == "2030-01-10"


def test_a_booking_without_scheduled_event_still_projects() -> None:
    contact = project([p.invitee_created(with_scheduled_event=False)])
    assert contact.status == "booked"
    assert contact.attributes == {
        "FIRSTNAME": "John",
        "LASTNAME": "Doe",
        "BOOKING_STATUS": "booked",
    }
    assert contact.list_ids == ()
    assert contact.unlink_list_ids == (10, 11)


# --- lists -------------------------------------------------------------------------------------
def test_on_cancel_list_moves_apply_only_while_the_contact_is_cancelled() -> None:
    cfg = p.settings(**MOVES)
    booked = project([p.invitee_created()], cfg=cfg)
    assert (booked.list_ids, booked.unlink_list_ids) == ((10,), (11, 20, 30))
    cancelled = project([p.invitee_created(), p.invitee_canceled()], cfg=cfg)
    assert (cancelled.list_ids, cancelled.unlink_list_ids) == ((20,), (10, 11, 30))
    rescheduled = project([p.invitee_created(), p.reschedule_pair()[0]], cfg=cfg)
    assert 20 not in rescheduled.list_ids


def test_on_no_show_list_moves() -> None:
    contact = project([p.invitee_created(), p.no_show_created()], cfg=p.settings(**MOVES))
    assert contact.list_ids == (10, 30)
    assert contact.unlink_list_ids == (11, 20)


def test_a_contact_without_bookings_touches_no_list() -> None:
    contact = project_contact(ANN, [], [], p.settings(**MOVES).rules)
    assert (contact.list_ids, contact.unlink_list_ids, contact.status) == ((), (), None)


# --- switches ----------------------------------------------------------------------------------
def test_effects_follow_the_sync_switches() -> None:
    on = p.settings()
    assert effects_enabled("invitee.created", on.rules) == (True, True)
    assert effects_enabled("invitee.canceled", on.rules) == (True, True)
    assert effects_enabled("invitee_no_show.deleted", on.rules) == (True, False)
    assert effects_enabled("routing_form_submission.created", on.rules) == (False, False)
    no_events = p.settings(connectors={"calendly": {"sync": {"events": False}}})
    assert effects_enabled("invitee.created", no_events.rules) == (True, False)
    assert event_for(p.invitee_created(), no_events) is None
    no_contacts = p.settings(connectors={"calendly": {"sync": {"contacts": False}}})
    assert effects_enabled("invitee.created", no_contacts.rules) == (False, True)
    disabled = p.settings(connectors={"calendly": {"enabled": False}})
    assert effects_enabled("invitee.created", disabled.rules) == (False, False)


def test_with_cancellations_off_a_cancel_changes_nothing() -> None:
    cfg = p.settings(connectors={"calendly": {"sync": {"cancellations": False}}})
    assert effects_enabled("invitee.canceled", cfg.rules) == (False, False)
    assert event_for(p.invitee_canceled(), cfg) is None
    assert project([p.invitee_created(), p.invitee_canceled()], cfg=cfg).status == "booked"


# --- custom event shape ------------------------------------------------------------------------
@cache
def brevo_event_schema() -> dict[str, Any]:
    schema: dict[str, Any] = load_spec()["components"]["schemas"]["event"]
    return schema


@pytest.mark.parametrize(
    "env",
    [
        p.invitee_created(
            tracking={"utm_source": "x", "utm_campaign": "y"}, join_url="https://zoom.us/j/1"
        ),
        p.reschedule_pair()[1],
        p.invitee_canceled(reason="x" * 5000),
        p.no_show_created(),
        p.invitee_created(with_scheduled_event=False),
    ],
)
def test_custom_events_fit_brevos_event_schema(env: dict[str, Any]) -> None:
    event = event_for(env)
    assert event is not None
    assert all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in event.properties.values()
    )
    assert all(len(v) <= 1000 for v in event.properties.values() if isinstance(v, str))
    request = {
        "event_name": event.name,
        "identifiers": {"email_id": event.email},
        "event_properties": event.properties,
        "event_date": event.event_date,
    }
    jsonschema.validate(request, brevo_event_schema())
    assert len(json.dumps(request)) < 50_000


def test_event_properties_describe_the_booking() -> None:
    event = event_for(
        p.invitee_created(tracking={"utm_source": "newsletter"}, join_url="https://zoom.us/j/1")
    )
    assert event is not None
    assert event.event_date == "2030-01-01T10:00:00.000Z"
    props = event.properties
    assert props["event_type_name"] == "15 Minute Meeting"
    assert props["event_type_uri"] == p.DEFAULT_EVENT_TYPE_URI
    assert props["start_time"] == "2030-01-10T15:00:00.000Z"
    assert props["meeting_date"] == "2030-01-10"
    assert props["timezone"] == "America/New_York"
    assert props["join_url"] == "https://zoom.us/j/1"
    assert props["utm_source"] == "newsletter"
    assert str(props["reschedule_url"]).startswith("https://calendly.com/reschedulings/")


def test_each_logical_event_yields_at_most_one_custom_event() -> None:
    canceled, created = p.reschedule_pair()
    names = [e.name if e else None for e in map(event_for, [canceled, created])]
    assert names == [None, "calendly_invitee_rescheduled"]


# --- hypothesis: order independence ------------------------------------------------------------
EVENT_TYPES = [(p.DEFAULT_EVENT_TYPE_URI, "15 Minute Meeting"), (p.DEMO_EVENT_TYPE_URI, "Demo"),
               (p.event_type_uri("UNMAPPED"), "Coffee")]  # fmt: skip
KINDS = [
    "created",
    "canceled",
    "rescheduled",
    "reschedule_cancel_only",
    "reschedule_create_only",
    "no_show",
    "no_show_undone",
    "no_show_undone_named",
]


@st.composite
def booking_events(draw: st.DrawFn, emails: Sequence[str]) -> list[dict[str, Any]]:
    """Every webhook a few bookings of ``emails`` send (plus a group event and duplicates)."""
    events: list[dict[str, Any]] = []
    n = draw(st.integers(1, 4))
    for i in range(n):
        email = draw(st.sampled_from(emails))
        et_uri, et_name = draw(st.sampled_from(EVENT_TYPES))
        kind = draw(st.sampled_from(KINDS))
        day = draw(st.integers(1, 20))
        start = f"2030-03-{day:02d}T10:00:00.000000Z"
        created_at = f"2030-01-{draw(st.integers(1, 20)):02d}T08:00:00.000000Z"
        uri = p.invitee_uri(f"EV{i}", f"INV{i}")
        common: dict[str, Any] = {"email": email, "invitee_uri": uri, "event_type_uri": et_uri,
                  "event_type_name": et_name, "start_time": start}  # fmt: skip
        questions = draw(
            st.sampled_from([(), (("Company", f"Co{i}"),), (("Phone", "+31612345678"),)])
        )
        if kind in ("rescheduled", "reschedule_cancel_only", "reschedule_create_only"):
            pair = p.reschedule_pair(
                email=email,
                old_invitee_uri=uri,
                new_invitee_uri=p.invitee_uri(f"EV{i}b", f"INV{i}b"),
                old_start=start,
                new_start=f"2030-04-{day:02d}T10:00:00.000000Z",
                event_type_uri=et_uri,
                event_type_name=et_name,
                created_at=created_at,
                questions=questions,
            )
            events.append(p.invitee_created(**common, created_at=created_at, questions=questions))
            if kind != "reschedule_create_only":
                events.append(pair[0])
            if kind != "reschedule_cancel_only":
                events.append(pair[1])
            continue
        events.append(p.invitee_created(**common, created_at=created_at, questions=questions))
        if kind == "canceled":
            events.append(p.invitee_canceled(**common, created_at=created_at, reason=""))
        if kind.startswith("no_show"):
            ns = p.no_show_uri(f"NS{i}")
            events.append(p.no_show_created(email=email, invitee_uri=uri, no_show_uri=ns))
            if kind == "no_show_undone":
                events.append(p.no_show_deleted(email=email, invitee_uri=uri))
            if kind == "no_show_undone_named":
                events.append(p.no_show_deleted(email=email, invitee_uri=uri, no_show_uri=ns))
    if draw(st.booleans()):
        events += p.group_event(emails, event_type_name="Webinar")
    duplicates = draw(st.lists(st.sampled_from(events), max_size=3))
    return events + duplicates


TWO_EMAILS = (ANN, BOB)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), events=booking_events(TWO_EMAILS))
def test_any_delivery_order_gives_the_same_contacts(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    cfg = p.settings(**MOVES)
    shuffled = data.draw(st.permutations(events))
    first, second = fold(events), fold(shuffled)
    for email in TWO_EMAILS:
        a = project_contact(email, *first, cfg.rules)
        b = project_contact(email, *second, cfg.rules)
        assert a == b
        # The projection is a function of the set: feeding the records reversed changes nothing.
        assert project_contact(email, reversed(first[0]), reversed(first[1]), cfg.rules) == a


@settings(max_examples=60, deadline=None)
@given(data=st.data(), events=booking_events((ANN,)))
def test_a_reschedule_never_leaves_the_contact_cancelled(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    plain_cancel = any(
        e["event"] == "invitee.canceled" and not e["payload"]["rescheduled"] for e in events
    )
    shuffled = data.draw(st.permutations(events))
    contact = project(shuffled, ANN)
    if not plain_cancel:
        assert contact.status != "cancelled"


@settings(max_examples=40, deadline=None)
@given(data=st.data(), day_a=st.integers(1, 28), day_b=st.integers(1, 28), cancel_b=st.booleans())
def test_cancelling_one_of_two_bookings_leaves_booked(
    data: st.DataObject, day_a: int, day_b: int, cancel_b: bool
) -> None:
    a: dict[str, Any] = {
        "invitee_uri": p.invitee_uri("A", "A"),
        "start_time": f"2030-05-{day_a:02d}T09:00:00Z",
    }
    b: dict[str, Any] = {
        "invitee_uri": p.invitee_uri("B", "B"),
        "start_time": f"2030-05-{day_b:02d}T09:00:00Z",
    }
    cancelled, kept = (b, a) if cancel_b else (a, b)
    events = [p.invitee_created(**a), p.invitee_created(**b), p.invitee_canceled(**cancelled)]
    contact = project(data.draw(st.permutations(events)))
    assert contact.status == "booked"
    assert contact.primary_invitee_uri == kept["invitee_uri"]
    assert contact.attributes["MEETING_DATE"] == kept["start_time"][:10]
