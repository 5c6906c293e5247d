"""Brevo effects: the contact as a function of the SET of invitee records and no-show marks.

:func:`project_contact` folds records per invitee URI (:func:`~calendly_brevo.state.merge_invitee`
is a join, so the fold order does not matter), then applies, for one email:

- A rescheduled booking (canceled with ``rescheduled: true``) whose new invitee is known (by its
  ``new_invitee``, or a record whose ``old_invitee`` points at it) is *superseded* and ignored.
- BOOKING_STATUS is ``booked`` if any booking is active and not a no-show; the booking
  attributes (MEETING_DATE, event type, links) then come from the active, not-no-show booking
  with the latest ``start_time``. Otherwise the most relevant remaining booking decides: latest
  ``start_time``, its status is ``no_show``, ``rescheduled`` (moved, new booking not known yet)
  or ``cancelled``. Ties: later ``created_at``, then the larger invitee URI.
  So a reschedule never leaves the contact ``cancelled`` (whatever half arrives first), and
  cancelling one of two bookings leaves the contact booked for the other.
- Person attributes (names, answers, phone, timezone, UTM) come from the booking created last
  (ties as above), each missing value filled from the next older booking.
- Lists: every list named in ``event_mapping`` or ``brevo.list_moves`` is *managed*. Desired =
  the mapped lists of every booking of the email (canceled ones included: they were leads for
  that event type), minus ``on_cancel.remove`` plus ``on_cancel.add`` when the status is
  ``cancelled`` (same for ``on_no_show``). ``list_ids`` = desired, ``unlink_list_ids`` =
  managed - desired. Lists the config does not name are never touched.

Why not "on cancel, add to list X" as a delta per event: Calendly sends a reschedule as a cancel
and a create in either order, and replays events. Applied as deltas, "create, then its
reschedule-cancel" and "cancel, then create" leave different memberships, and a late duplicate
cancel re-adds a booked contact to the re-engagement list. Computing the full desired membership
from the set of records, and unlinking every managed list not in it, gives the same Brevo state
for every delivery order. The price: a managed list is owned by the connector, so a contact added
to it by hand is removed at its next booking event.

Bookings of event types ``sync.event_types`` leaves out are invisible here: they are stored, and
count again as soon as the filter lets them in.

With ``sync.cancellations: false`` cancellations are invisible here (canceled bookings count as
active), so stored cancel records are harmless and turning the switch on recomputes correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from calendly_brevo.config import Rules
from calendly_brevo.events import (
    INVITEE_CANCELED,
    INVITEE_CREATED,
    NO_SHOW_CREATED,
    NO_SHOW_DELETED,
    ROUTING_FORM_SUBMITTED,
    EventIdentity,
    WebhookEvent,
    normalize_email,
)
from calendly_brevo.mapping import (
    booking_attributes,
    event_type_synced,
    lists_for,
    meeting_date,
    person_attributes,
    split_name,
    words,
)
from calendly_brevo.state import (
    BookingStatus,
    InviteeRecord,
    NoShowMark,
    booking_status,
    merge_records,
    record_from_event,
    stamp,
)
from calendly_brevo.times import parse_time

#: Brevo event_properties: keys ``[A-Za-z0-9_-]`` ≤ 255, whole body ≤ 50 KB. Strings are cut here.
MAX_PROPERTY_CHARS = 1000


@dataclass(frozen=True, slots=True)
class ContactProjection:
    email: str
    attributes: dict[str, Any]
    list_ids: tuple[int, ...] = ()
    unlink_list_ids: tuple[int, ...] = ()
    #: BOOKING_STATUS value (also in ``attributes`` when mapped); ``None`` without bookings.
    status: BookingStatus | None = None
    #: Invitee URI the booking attributes came from.
    primary_invitee_uri: str | None = None


#: The event property that carries the connector's id of the logical event (the same on every
#: attempt), so an event whose sending had an unknown outcome can be looked up in Brevo.
EVENT_ID_PROPERTY = "connector_event_id"


@dataclass(frozen=True, slots=True)
class BrevoEvent:
    """One ``POST /v3/events`` body without its identifiers."""

    name: str
    properties: dict[str, str | int] = field(default_factory=dict)
    #: ISO 8601 UTC with milliseconds (``2024-02-06T20:59:23.383Z``), or ``None`` (Brevo: now).
    event_date: str | None = None
    #: The contact the event is about (identifiers.email_id).
    email: str | None = None


def _recency(record: InviteeRecord, when: str | None) -> tuple[str, str, str]:
    return (stamp(when), stamp(record.created_at), record.invitee_uri)


def _superseded(bookings: Mapping[str, InviteeRecord]) -> set[str]:
    replaced_by_new = {r.old_invitee for r in bookings.values() if r.old_invitee}
    return {
        uri
        for uri, r in bookings.items()
        if r.canceled
        and r.rescheduled
        and ((r.new_invitee is not None and r.new_invitee in bookings) or uri in replaced_by_new)
    }


def project_contact(
    email: str,
    records: Iterable[InviteeRecord],
    marks: Iterable[NoShowMark],
    rules: Rules,
) -> ContactProjection:
    """The Brevo contact for ``email`` (rules in the module docstring). Deterministic in the
    set of ``records`` and ``marks``; records of other emails are ignored."""
    key = normalize_email(email) or email.strip().lower()
    bookings = {
        uri: r
        for uri, r in merge_records(records).items()
        if normalize_email(r.email) == key and event_type_synced(r, rules.sync.event_types)
    }
    marks = tuple(marks)
    if not rules.sync.cancellations:
        bookings = {
            uri: replace(r, status="active", rescheduled=False) for uri, r in bookings.items()
        }
    if not bookings:
        return ContactProjection(email=key, attributes={})

    statuses = {uri: booking_status(r, marks) for uri, r in bookings.items()}
    gone = _superseded(bookings)
    live = [r for uri, r in bookings.items() if statuses[uri] == "booked"]
    remaining = [r for uri, r in bookings.items() if uri not in gone] or list(bookings.values())
    pool = live or remaining
    primary = max(pool, key=lambda r: _recency(r, r.start_time))
    status = statuses[primary.invitee_uri]

    attributes: dict[str, Any] = {}
    for record in sorted(bookings.values(), key=lambda r: _recency(r, r.created_at), reverse=True):
        for name, value in person_attributes(record, rules).items():
            attributes.setdefault(name, value)
    attributes.update(booking_attributes(primary, status, rules.fields))

    desired: set[int] = {i for r in bookings.values() for i in lists_for(r, rules.event_mapping)}
    moves = rules.list_moves
    move = {"cancelled": moves.on_cancel, "no_show": moves.on_no_show}.get(status)
    if move is not None:
        desired = (desired - set(move.remove)) | set(move.add)
    unlink = rules.managed_lists() - desired
    return ContactProjection(
        email=key,
        attributes=attributes,
        list_ids=tuple(sorted(desired)),
        unlink_list_ids=tuple(sorted(unlink)),
        status=status,
        primary_invitee_uri=primary.invitee_uri,
    )


# --- switches ----------------------------------------------------------------------------------
def effects_enabled(event_name: str, rules: Rules) -> tuple[bool, bool]:
    """(upsert the contact?, send the custom event?) for an event under ``calendly.sync``.

    ``cancellations: false`` makes ``invitee.canceled`` change nothing at all; events the
    connector does not handle have no effects.
    """
    sync = rules.sync
    names = rules.events
    if not rules.enabled:
        return (False, False)
    if event_name in (INVITEE_CREATED, NO_SHOW_CREATED):
        return (sync.contacts, sync.events)
    if event_name == INVITEE_CANCELED:
        return (sync.contacts, sync.events) if sync.cancellations else (False, False)
    if event_name == NO_SHOW_DELETED:
        return (sync.contacts, sync.events and names.no_show_deleted is not None)
    if event_name == ROUTING_FORM_SUBMITTED:
        return (
            sync.contacts and rules.upsert_routing_form_submitters,
            sync.events and names.routing_form_submitted is not None,
        )
    return (False, False)


# --- custom events -----------------------------------------------------------------------------
def brevo_timestamp(value: str | None) -> str | None:
    parsed = parse_time(value)
    if parsed is None:
        return None
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"


def _properties(items: Iterable[tuple[str, str | int | bool | None]]) -> dict[str, str | int]:
    """Brevo's schema takes string and integer values (not booleans, not floats)."""
    props: dict[str, str | int] = {}
    for key, value in items:
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            props[key] = "true" if value else "false"
        elif isinstance(value, int):
            props[key] = value
        else:
            props[key] = str(value)[:MAX_PROPERTY_CHARS]
    return props


def invitee_properties(record: InviteeRecord, identity: EventIdentity) -> dict[str, str | int]:
    first, last = split_name(record)
    items: list[tuple[str, str | int | bool | None]] = [
        ("invitee_uri", record.invitee_uri),
        ("event_type_name", record.event_type_name),
        ("event_type_uri", record.event_type_uri),
        ("scheduled_event_uri", record.scheduled_event_uri),
        ("start_time", brevo_timestamp(record.start_time) or record.start_time),
        ("end_time", brevo_timestamp(record.end_time) or record.end_time),
        ("meeting_date", meeting_date(record.start_time, record.timezone)),
        ("timezone", record.timezone),
        ("first_name", first),
        ("last_name", last),
        ("cancel_url", record.cancel_url),
        ("reschedule_url", record.reschedule_url),
        ("location_type", record.location_type),
        ("location", record.location),
        ("join_url", record.join_url),
        ("old_invitee", record.old_invitee),
        ("new_invitee", record.new_invitee),
        ("rescheduled", record.old_invitee is not None or record.rescheduled),
        # The invitee's state as far as the connector knows now (a create that arrives after
        # its own cancel still fires once; automations can filter on this).
        ("invitee_status", record.status),
        ("no_show_uri", identity.no_show_uri),
    ]
    if identity.event_name == INVITEE_CANCELED:
        items += [
            ("cancel_reason", record.cancel_reason),
            ("canceler_type", record.canceler_type),
            ("canceled_by", record.canceled_by),
        ]
    items += [(k, v) for k, v in record.tracking]
    return _properties(items)


def custom_event(
    event: WebhookEvent, record: InviteeRecord | None, rules: Rules
) -> BrevoEvent | None:
    """The one Brevo custom event for this logical event, or ``None``.

    The decision uses this event's own payload; ``record`` (e.g. the merged, richer record of
    the invitee) only supplies properties. ``invitee.canceled`` with ``rescheduled: true`` is
    never an event: a reschedule is not a cancellation (the created half sends
    ``rescheduled``). Its properties carry the logical event's id (:data:`EVENT_ID_PROPERTY`).
    """
    identity = event.identity
    _, send = effects_enabled(identity.event_name, rules)
    if not send:
        return None
    if identity.event_name == ROUTING_FORM_SUBMITTED:
        made = _routing_event(event, rules)
    else:
        made = _invitee_event(event, record, rules)
    if made is None:
        return None
    return replace(made, properties={**made.properties, EVENT_ID_PROPERTY: identity.event_id})


def _invitee_event(
    event: WebhookEvent, record: InviteeRecord | None, rules: Rules
) -> BrevoEvent | None:
    identity = event.identity
    names = rules.events
    own = record_from_event(event)
    if own is None or event.invitee is None:
        return None
    record = record or own
    if identity.event_name == INVITEE_CREATED:
        name: str | None = names.rescheduled if own.old_invitee else names.created
        when = own.created_at
    elif identity.event_name == INVITEE_CANCELED:
        name = None if own.rescheduled else names.canceled
        when = own.canceled_at
    elif identity.event_name == NO_SHOW_CREATED:
        name = names.no_show
        marked = event.invitee.no_show
        when = marked.created_at if marked is not None else None
    elif identity.event_name == NO_SHOW_DELETED:
        name = names.no_show_deleted
        when = event.created_at
    else:
        return None
    if name is None:
        return None
    return BrevoEvent(
        name=name,
        properties=invitee_properties(record, identity),
        event_date=brevo_timestamp(when) or brevo_timestamp(event.created_at),
        email=identity.email,
    )


def _routing_event(event: WebhookEvent, rules: Rules) -> BrevoEvent | None:
    name = rules.events.routing_form_submitted
    submission = event.submission
    email = event.identity.email
    if name is None or submission is None or email is None:
        return None
    result = submission.result or {}
    items: list[tuple[str, str | int | bool | None]] = [
        ("submission_uri", submission.uri),
        ("routing_form", submission.routing_form),
        ("submitter", submission.submitter),
        ("result_type", _text(result.get("type"))),
        ("result_value", _text(result.get("value"))),
    ]
    if submission.tracking:
        items += list(submission.tracking.model_dump().items())
    return BrevoEvent(
        name=name,
        properties=_properties(items),
        event_date=brevo_timestamp(submission.created_at) or brevo_timestamp(event.created_at),
        email=email,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --- routing forms -----------------------------------------------------------------------------
_NAME_QUESTIONS = {("name",), ("full", "name"), ("your", "name")}


def routing_form_contact(event: WebhookEvent, rules: Rules) -> ContactProjection | None:
    """Upsert of a routing form submitter (``brevo.upsert_routing_form_submitters``).

    The email is the answer to a question mentioning e-mail, else the first answer that is an
    address; no email → ``None``. Attributes: ``questions_and_answers`` mapping, a "Name" /
    "First name" / "Last name" question for the name attributes, UTM tracking. No lists and no
    BOOKING_STATUS: a submission is not a booking.
    """
    submission = event.submission
    email = event.identity.email
    if not rules.upsert_routing_form_submitters or submission is None or email is None:
        return None
    qas = tuple(
        (qa.question.strip(), qa.answer.strip())
        for qa in submission.questions_and_answers
        if qa.question and qa.answer and qa.answer.strip()
    )
    by_words = {words(q): a for q, a in reversed(qas)}
    full = next((by_words[w] for w in sorted(_NAME_QUESTIONS) if w in by_words), None)
    tracking = submission.tracking.model_dump() if submission.tracking else {}
    record = InviteeRecord(
        invitee_uri=submission.uri or "routing-form-submission",
        email=email,
        name=full,
        first_name=by_words.get(("first", "name")),
        last_name=by_words.get(("last", "name")),
        questions_and_answers=qas,
        tracking=tuple(sorted((k, v) for k, v in tracking.items() if v)),
    )
    return ContactProjection(email=email, attributes=person_attributes(record, rules))
