"""Parsing Calendly webhooks, event ids and event identity."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calendly_brevo.errors import UnmappableEvent
from calendly_brevo.events import (
    EVENT_ID_VERSION,
    HANDLED_EVENTS,
    envelope_from_dict,
    event_from_dict,
    event_id,
    invitee_payload,
    normalize_email,
    parse_envelope,
    read_event,
)
from calendly_brevo.payloads import InviteePayload
from tests import payloads as p

EXAMPLES = [
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
    "routing_form_submission.created",
    "event_type.created",
]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_calendly_example_parses_and_gets_an_id(name: str) -> None:
    env = parse_envelope(p.body(p.example(name)))
    identity = read_event(env).identity
    assert env.event == name
    assert len(identity.event_id) == 64
    assert identity.handled is (name in HANDLED_EVENTS)


def test_handled_events_are_the_four_invitee_events_and_routing_forms() -> None:
    assert {
        "invitee.created",
        "invitee.canceled",
        "invitee_no_show.created",
        "invitee_no_show.deleted",
        "routing_form_submission.created",
    } == HANDLED_EVENTS


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"payload": {}}', "no 'event'"),
        (b'{"event": "", "payload": {}}', "no 'event'"),
        (b'{"event": "invitee.created"}', "'payload' is missing"),
        (b'{"event": "invitee.created", "payload": [1]}', "not an object"),
    ],
)
def test_a_malformed_body_is_unmappable_with_a_clear_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(UnmappableEvent, match=reason):
        parse_envelope(raw)


def test_unknown_fields_are_kept() -> None:
    env = p.with_payload(p.invitee_created(), brand_new_field={"x": 1})
    env["also_new"] = True
    parsed = parse_envelope(p.body(env))
    payload = invitee_payload(parsed)
    assert payload.model_extra == {"brand_new_field": {"x": 1}}
    assert parsed.model_extra == {"also_new": True}


def test_null_first_and_last_names_and_empty_reason_parse() -> None:
    env = p.invitee_canceled(first_name=None, last_name=None, reason="")
    payload = invitee_payload(envelope_from_dict(env))
    assert payload.first_name is None
    assert payload.last_name is None
    assert payload.name == "John Doe"
    assert payload.cancellation is not None
    assert payload.cancellation.reason == ""


def test_a_payload_without_scheduled_event_parses() -> None:
    payload = invitee_payload(envelope_from_dict(p.invitee_created(with_scheduled_event=False)))
    assert payload.scheduled_event is None
    assert payload.event == p.scheduled_event_uri()


def test_wrongly_typed_optional_fields_degrade_to_none_instead_of_failing() -> None:
    env = p.with_payload(
        p.invitee_created(),
        timezone={"not": "a string"},
        tracking="nope",
        questions_and_answers=None,
        rescheduled=None,
        text_reminder_number=31612345678,
    )
    payload = invitee_payload(envelope_from_dict(env))
    assert payload.timezone is None
    assert payload.tracking is None
    assert payload.questions_and_answers == []
    assert payload.rescheduled is False
    assert payload.text_reminder_number == "31612345678"


def test_a_v1_payload_shape_is_unmappable() -> None:
    env = {"event": "invitee.created", "payload": {"invitee": {"email": "a@example.com"}}}
    with pytest.raises(UnmappableEvent, match="v1"):
        event_from_dict(env)


# --- event ids ---------------------------------------------------------------------------------
def test_event_id_is_a_versioned_sha256_of_name_invitee_and_no_show() -> None:
    uri = p.invitee_uri()
    expected_input = "calendly-brevo/event-id" + json.dumps(
        [EVENT_ID_VERSION, "invitee.created", uri, ""], separators=(",", ":")
    )
    assert event_id("invitee.created", uri) == hashlib.sha256(expected_input.encode()).hexdigest()


def test_retries_and_overlapping_subscriptions_share_one_event_id() -> None:
    env = p.invitee_created()
    retry = json.dumps(env, indent=2, sort_keys=True)  # same event, other bytes
    other_subscription = dict(
        env, created_by=f"{p.API}/users/OTHER", created_at="2030-01-01T10:00:01Z"
    )
    ids = {read_event(parse_envelope(raw)).identity.event_id for raw in (p.body(env), retry)}
    ids.add(event_from_dict(other_subscription).identity.event_id)
    assert len(ids) == 1


def test_a_backfill_replay_with_a_later_invitee_state_shares_the_id() -> None:
    live = p.invitee_created()
    replay = p.with_payload(live, updated_at="2030-02-01T00:00:00Z", status="canceled")
    assert event_from_dict(live).identity.event_id == event_from_dict(replay).identity.event_id


def test_created_and_canceled_of_one_invitee_have_different_ids() -> None:
    created = event_from_dict(p.invitee_created()).identity
    canceled = event_from_dict(p.invitee_canceled()).identity
    assert created.event_id != canceled.event_id


def test_group_invitees_of_one_scheduled_event_have_different_ids() -> None:
    ids = {event_from_dict(e).identity.event_id for e in p.group_event(["a@x.io", "b@x.io"])}
    assert len(ids) == 2


def test_two_no_show_marks_of_one_invitee_have_different_ids() -> None:
    first = event_from_dict(p.no_show_created(no_show_uri=p.no_show_uri("A"))).identity
    second = event_from_dict(p.no_show_created(no_show_uri=p.no_show_uri("B"))).identity
    assert first.no_show_uri == p.no_show_uri("A")
    assert first.event_id != second.event_id


def test_a_no_show_deletion_without_no_show_object_falls_back_to_the_invitee_uri() -> None:
    identity = event_from_dict(p.no_show_deleted()).identity
    assert identity.no_show_uri is None
    assert identity.event_id == event_id("invitee_no_show.deleted", p.invitee_uri())


def test_a_no_show_deletion_naming_its_mark_uses_the_mark() -> None:
    identity = event_from_dict(p.no_show_deleted(no_show_uri=p.no_show_uri("A"))).identity
    assert identity.no_show_uri == p.no_show_uri("A")
    assert identity.event_id == event_id(
        "invitee_no_show.deleted", p.invitee_uri(), p.no_show_uri("A")
    )


def test_an_invitee_event_ignores_a_no_show_object_in_its_id() -> None:
    replay = p.with_payload(
        p.invitee_created(), no_show={"uri": p.no_show_uri(), "created_at": None}
    )
    assert event_from_dict(replay).identity.event_id == event_id("invitee.created", p.invitee_uri())


def test_event_id_without_invitee_or_fallback_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="fallback"):
        event_id("invitee.created", None)


def test_a_routing_form_submission_is_identified_by_its_uri() -> None:
    env = p.routing_form_submission()
    identity = event_from_dict(env).identity
    retry = event_from_dict(dict(env, created_at="2031-01-01T00:00:00Z")).identity
    assert identity.invitee_uri is None
    assert identity.email == "lead@example.com"
    assert identity.event_id == retry.event_id
    assert identity.event_id == event_id(
        "routing_form_submission.created", None, fallback=env["payload"]["uri"]
    )


def test_event_type_events_are_identified_by_uri_and_update_time() -> None:
    env = p.event_type_created()
    identity = event_from_dict(env).identity
    updated = p.with_payload(env, updated_at="2031-01-01T00:00:00Z")
    assert not identity.handled
    assert identity.email is None
    assert identity.event_id == event_id(
        "event_type.created",
        None,
        fallback=f"{env['payload']['uri']}@{env['payload']['updated_at']}",
    )
    assert event_from_dict(updated).identity.event_id != identity.event_id


def test_an_unknown_event_without_uri_is_identified_by_its_content() -> None:
    env = {"event": "contact.deleted", "created_at": "2030-01-01T00:00:00Z", "payload": {"x": 1}}
    first = event_from_dict(env).identity
    again = read_event(parse_envelope(json.dumps(env, indent=1))).identity
    other = event_from_dict(dict(env, payload={"x": 2})).identity
    assert first.event_id == again.event_id != other.event_id
    assert not first.handled


# --- emails ------------------------------------------------------------------------------------
def test_identify_lower_cases_and_strips_the_email() -> None:
    identity = read_event(
        envelope_from_dict(p.invitee_created(email="  John.Doe+Sales@Example.COM "))
    ).identity
    assert identity.email == "john.doe+sales@example.com"
    assert identity.invitee_uri == p.invitee_uri()


def test_unicode_emails_are_kept_and_not_case_folded() -> None:
    assert normalize_email("Straße@Bücher.DE") == "straße@bücher.de"


@pytest.mark.parametrize("email", [None, "", "   "])
def test_an_invitee_without_email_is_unmappable(email: str | None) -> None:
    env = p.with_payload(p.invitee_created(), email=email)
    with pytest.raises(UnmappableEvent, match="invitee has no email"):
        event_from_dict(env)


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "a b@example.com", "@example.com"])
def test_an_invalid_email_is_unmappable_and_not_echoed(email: str) -> None:
    env = p.with_payload(p.invitee_created(), email=email)
    with pytest.raises(UnmappableEvent, match="not a valid address") as info:
        event_from_dict(env)
    assert email not in str(info.value)
    assert info.value.code == "bad_email"


def test_an_invitee_without_uri_is_unmappable() -> None:
    env = p.without(p.invitee_created(), "uri")
    with pytest.raises(UnmappableEvent, match="no 'uri'"):
        event_from_dict(env)


def test_an_ignored_event_never_raises_for_missing_invitee_fields() -> None:
    identity = event_from_dict({"event": "meeting_recap.created", "payload": {}}).identity
    assert not identity.handled


def test_routing_form_email_prefers_the_email_question_then_any_address() -> None:
    env = p.routing_form_submission(
        answers=[("Referrer", "boss@example.com"), ("Your E-mail", " Lead@Example.com ")]
    )
    assert event_from_dict(env).identity.email == "lead@example.com"
    env = p.routing_form_submission(answers=[("Anything", "x"), ("Contact", "me@example.com")])
    assert event_from_dict(env).identity.email == "me@example.com"
    env = p.routing_form_submission(answers=[("Industry", "IT")])
    assert event_from_dict(env).identity.email is None


@settings(max_examples=60, deadline=None)
@given(
    local=st.from_regex(r"[A-Za-z0-9._+-]{1,12}", fullmatch=True),
    domain=st.from_regex(r"[A-Za-z0-9-]{1,10}\.[A-Za-z]{2,6}", fullmatch=True),
    pad=st.sampled_from(["", " ", "\t", "  \n"]),
)
def test_email_normalisation_is_idempotent_and_case_insensitive(
    local: str, domain: str, pad: str
) -> None:
    email = f"{pad}{local}@{domain}{pad}"
    normal = normalize_email(email)
    assert normal == f"{local}@{domain}".lower()
    assert normalize_email(normal) == normal
    assert normalize_email(email.upper()) == normal


def test_invitee_payload_model_keeps_extra_fields_in_dump() -> None:
    payload = InviteePayload.model_validate({"uri": "u", "email": "a@b.co", "future": 1})
    assert payload.model_dump()["future"] == 1
