"""Invitee state: what the connector knows about each booking, as a join semilattice.

An :class:`InviteeRecord` is one Calendly invitee (one booking of one email; a reschedule
creates a new invitee URI). Every invitee-shaped event (``invitee.*``, ``invitee_no_show.*``)
yields a record; records for one invitee URI are combined with :func:`merge_invitee`, which is
commutative, associative and idempotent, so the stored record is the same whatever order,
however often, the events arrive (DESIGN invariant 3):

- ``status``: ``canceled`` beats ``active``; an invitee URI never becomes active again.
- ``rescheduled``: OR. ``old_invitee``/``new_invitee`` and every other field: a value beats
  ``None`` (empty strings and empty collections count as ``None``); two different values are a
  real conflict, and the one observed at the later ``updated_at`` wins, ties broken by the
  larger canonical JSON of the value.
- Each field remembers the ``updated_at`` it was observed at (``stamps``, only where it differs
  from the record's own ``updated_at``): "value from the later record" is only associative when
  a value that was filled in from an older record keeps its older stamp.

A :class:`NoShowMark` is one ``invitee_no_show`` mark. Its flags only ever turn on, so a mark
that was deleted stays deleted whatever order ``created``/``deleted`` arrive. Calendly's own
``invitee_no_show.deleted`` example carries no ``no_show`` object: such a deletion is stored as
a mark without URI and clears every mark of that invitee created at or before it
(:func:`is_no_show`). Weak spot: the envelope's ``created_at`` is often whole seconds, so a
mark deleted within the second it was created may survive an anonymous deletion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from calendly_brevo.events import (
    INVITEE_CANCELED,
    NO_SHOW_CREATED,
    NO_SHOW_DELETED,
    WebhookEvent,
)
from calendly_brevo.payloads import InviteePayload
from calendly_brevo.times import parse_time

Status = Literal["active", "canceled"]
BookingStatus = Literal["booked", "cancelled", "rescheduled", "no_show"]


# --- time --------------------------------------------------------------------------------------
def stamp(value: str | None) -> str:
    """A string that sorts like the instant: canonical UTC for parseable timestamps, the raw
    text (after them: ``~`` sorts after digits) otherwise, ``""`` for none."""
    parsed = parse_time(value)
    if parsed is not None:
        return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "" if not value else "~" + value


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == ()


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# --- invitee records ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InviteeRecord:
    invitee_uri: str
    email: str
    status: Status = "active"
    rescheduled: bool = False
    old_invitee: str | None = None
    new_invitee: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    event_type_uri: str | None = None
    event_type_name: str | None = None
    scheduled_event_uri: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    timezone: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    canceled_at: str | None = None
    canceled_by: str | None = None
    cancel_reason: str | None = None
    canceler_type: str | None = None
    cancel_url: str | None = None
    reschedule_url: str | None = None
    #: ``(question, answer)`` in the order of Calendly's ``position``.
    questions_and_answers: tuple[tuple[str, str], ...] = ()
    #: ``(key, value)`` sorted by key, non-null values only (``utm_source``, ...).
    tracking: tuple[tuple[str, str], ...] = ()
    text_reminder_number: str | None = None
    location_type: str | None = None
    location: str | None = None
    join_url: str | None = None
    scheduling_method: str | None = None
    routing_form_submission: str | None = None
    #: ``(field, stamp)`` for fields observed at another ``updated_at`` than the record's.
    stamps: tuple[tuple[str, str], ...] = ()

    @property
    def tracking_dict(self) -> dict[str, str]:
        return dict(self.tracking)

    @property
    def canceled(self) -> bool:
        return self.status == "canceled"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists, tracking and stamps objects). Every other
        field holds a str, a bool or None, so a shallow copy is enough (``asdict``'s deep one
        was a measurable share of the worker's CPU per event)."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["questions_and_answers"] = [list(qa) for qa in self.questions_and_answers]
        data["tracking"] = dict(self.tracking)
        data["stamps"] = dict(self.stamps)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InviteeRecord:
        """Inverse of :meth:`to_dict`; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["questions_and_answers"] = tuple(
            (str(q), str(a)) for q, a in values.get("questions_and_answers") or ()
        )
        values["tracking"] = tuple(sorted((values.get("tracking") or {}).items()))
        values["stamps"] = tuple(sorted((values.get("stamps") or {}).items()))
        if values.get("status") not in ("active", "canceled"):
            values["status"] = "active"
        return _normalized(cls(**values))

    def field_stamp(self, name: str) -> str:
        for field_name, value in self.stamps:
            if field_name == name:
                return value
        return stamp(self.updated_at)


_FIELD_NAMES = tuple(f.name for f in fields(InviteeRecord))

#: Fields merged last-writer-wins (everything but identity, status and bookkeeping).
_LWW_FIELDS = tuple(
    f.name
    for f in fields(InviteeRecord)
    if f.name not in ("invitee_uri", "status", "rescheduled", "updated_at", "stamps")
)


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(InviteeRecord)}


def _normalized(record: InviteeRecord) -> InviteeRecord:
    """Empty values become the field default; stamps that equal the record's own or belong to
    empty fields are dropped, the rest sorted. Merging relies on this canonical form."""
    blanks = {
        name: _DEFAULTS[name]
        for name in _LWW_FIELDS
        if _blank(getattr(record, name)) and getattr(record, name) != _DEFAULTS[name]
    }
    if blanks:
        record = replace(record, **blanks)
    own = stamp(record.updated_at)
    kept = tuple(
        sorted(
            (name, value)
            for name, value in dict(record.stamps).items()
            if name in _LWW_FIELDS and value != own and not _blank(getattr(record, name))
        )
    )
    return record if kept == record.stamps else replace(record, stamps=kept)


def merge_invitee(a: InviteeRecord | None, b: InviteeRecord) -> InviteeRecord:
    """Join of two observations of one invitee (rules in the module docstring)."""
    if a is None:
        return _normalized(b)
    if a.invitee_uri != b.invitee_uri:
        raise ValueError("merge_invitee: records of different invitees")
    updated_at = max(a.updated_at, b.updated_at, key=lambda t: (stamp(t), t or ""))
    values: dict[str, Any] = {}
    field_stamps: dict[str, str] = {}
    for name in _LWW_FIELDS:
        candidates = [
            (r.field_stamp(name), _canon(getattr(r, name)), getattr(r, name))
            for r in (a, b)
            if not _blank(getattr(r, name))
        ]
        if candidates:
            best = max(candidates, key=lambda c: (c[0], c[1]))
            values[name] = best[2]
            field_stamps[name] = best[0]
        else:
            values[name] = _DEFAULTS[name]
    merged = InviteeRecord(
        invitee_uri=a.invitee_uri,
        status="canceled" if a.canceled or b.canceled else "active",
        rescheduled=a.rescheduled or b.rescheduled,
        updated_at=updated_at,
        stamps=tuple(field_stamps.items()),
        **values,
    )
    return _normalized(merged)


def merge_records(records: Iterable[InviteeRecord]) -> dict[str, InviteeRecord]:
    """Records grouped by invitee URI and merged; the input order does not matter."""
    merged: dict[str, InviteeRecord] = {}
    for record in records:
        merged[record.invitee_uri] = merge_invitee(merged.get(record.invitee_uri), record)
    return merged


def _questions(payload: InviteePayload) -> tuple[tuple[str, str], ...]:
    indexed = [
        (qa.position if qa.position is not None else 1 << 30, i, qa)
        for i, qa in enumerate(payload.questions_and_answers)
    ]
    return tuple(
        (qa.question.strip(), qa.answer.strip())
        for _, _, qa in sorted(indexed, key=lambda t: (t[0], t[1]))
        if qa.question and qa.question.strip() and qa.answer and qa.answer.strip()
    )


def _invitee(event: WebhookEvent) -> tuple[InviteePayload, str, str] | None:
    """The invitee payload, URI and email of an invitee event (:func:`read_event` checked
    them), else ``None``."""
    ident = event.identity
    if event.invitee is None or ident.invitee_uri is None or ident.email is None:
        return None
    return event.invitee, ident.invitee_uri, ident.email


def record_from_event(event: WebhookEvent) -> InviteeRecord | None:
    """The invitee as this event shows it; ``None`` for events without an invitee payload.

    ``invitee.canceled`` always yields a canceled record; a ``scheduled_event`` missing from
    old payloads leaves the event type fields ``None``.
    """
    invitee = _invitee(event)
    if invitee is None:
        return None
    p, uri, email = invitee
    env = event.envelope
    se = p.scheduled_event
    cancellation = p.cancellation or (se.cancellation if se else None)
    canceled = env.event == INVITEE_CANCELED or (p.status or "").strip().lower() == "canceled"
    tracking = p.tracking.model_dump() if p.tracking else {}
    location = se.location if se else None
    canceled_at = None
    if canceled:
        canceled_at = _clean(cancellation.created_at if cancellation else None) or _clean(
            p.updated_at if env.event == INVITEE_CANCELED else None
        )
    record = InviteeRecord(
        invitee_uri=uri,
        email=email,
        status="canceled" if canceled else "active",
        rescheduled=bool(p.rescheduled) and canceled,
        old_invitee=_clean(p.old_invitee),
        new_invitee=_clean(p.new_invitee),
        name=_clean(p.name),
        first_name=_clean(p.first_name),
        last_name=_clean(p.last_name),
        event_type_uri=_clean(se.event_type) if se else None,
        event_type_name=_clean(se.name) if se else None,
        scheduled_event_uri=(_clean(se.uri) if se else None) or _clean(p.event),
        start_time=_clean(se.start_time) if se else None,
        end_time=_clean(se.end_time) if se else None,
        timezone=_clean(p.timezone),
        created_at=_clean(p.created_at),
        updated_at=_clean(p.updated_at),
        canceled_at=canceled_at,
        canceled_by=_clean(cancellation.canceled_by) if canceled and cancellation else None,
        cancel_reason=_clean(cancellation.reason) if canceled and cancellation else None,
        canceler_type=_clean(cancellation.canceler_type) if canceled and cancellation else None,
        cancel_url=_clean(p.cancel_url),
        reschedule_url=_clean(p.reschedule_url),
        questions_and_answers=_questions(p),
        tracking=tuple(sorted((k, v.strip()) for k, v in tracking.items() if v and v.strip())),
        text_reminder_number=_clean(p.text_reminder_number),
        location_type=_clean(location.type) if location else None,
        location=_clean(location.location) if location else None,
        join_url=_clean(location.join_url) if location else None,
        scheduling_method=_clean(p.scheduling_method),
        routing_form_submission=_clean(p.routing_form_submission),
    )
    return record


# --- no-show marks -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NoShowMark:
    #: ``None`` for a deletion that did not say which mark it deleted.
    no_show_uri: str | None
    invitee_uri: str
    created: bool = False
    deleted: bool = False
    #: Creation time of the mark; for a deletion without URI, the time of the deletion.
    marked_at: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.invitee_uri, self.no_show_uri or "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoShowMark:
        return cls(
            no_show_uri=data.get("no_show_uri"),
            invitee_uri=str(data["invitee_uri"]),
            created=bool(data.get("created")),
            deleted=bool(data.get("deleted")),
            marked_at=data.get("marked_at"),
        )


def merge_no_show(a: NoShowMark | None, b: NoShowMark) -> NoShowMark:
    """Join: flags are OR-ed, ``marked_at`` is the later one."""
    if a is None:
        return b
    if a.key != b.key:
        raise ValueError("merge_no_show: marks of different no-shows")
    marked_at = max(a.marked_at, b.marked_at, key=lambda t: (stamp(t), t or ""))
    return NoShowMark(
        a.no_show_uri, a.invitee_uri, a.created or b.created, a.deleted or b.deleted, marked_at
    )


def merge_marks(marks: Iterable[NoShowMark]) -> dict[tuple[str, str], NoShowMark]:
    merged: dict[tuple[str, str], NoShowMark] = {}
    for mark in marks:
        merged[mark.key] = merge_no_show(merged.get(mark.key), mark)
    return merged


def mark_from_event(event: WebhookEvent) -> NoShowMark | None:
    """The no-show mark an event shows, if any.

    ``invitee_no_show.created`` → a created mark; ``invitee_no_show.deleted`` → a deleted
    mark (by URI when the payload names it, else a URI-less deletion stamped with the
    envelope's ``created_at``). Any other invitee event whose payload carries a ``no_show``
    object (backfill replays of invitees fetched from the API) → a created mark.
    """
    invitee = _invitee(event)
    if invitee is None:
        return None
    p, uri, _ = invitee
    env = event.envelope
    no_show_uri = _clean(p.no_show.uri) if p.no_show else None
    if env.event == NO_SHOW_DELETED:
        marked_at = (p.no_show.created_at if p.no_show and no_show_uri else None) or env.created_at
        return NoShowMark(
            no_show_uri, uri, created=False, deleted=True, marked_at=_clean(marked_at)
        )
    if env.event == NO_SHOW_CREATED and no_show_uri is None:
        # A no-show event that does not name its mark: a synthetic URI, stamped by the envelope.
        return NoShowMark(f"{uri}#no_show", uri, created=True, marked_at=_clean(env.created_at))
    if no_show_uri is None or p.no_show is None:
        return None
    return NoShowMark(no_show_uri, uri, created=True, marked_at=_clean(p.no_show.created_at))


def is_no_show(invitee: str, marks: Iterable[NoShowMark]) -> bool:
    """A live (created, not deleted) mark newer than every URI-less deletion."""
    mine = [m for m in merge_marks(marks).values() if m.invitee_uri == invitee]
    wipes = [stamp(m.marked_at) for m in mine if m.no_show_uri is None and m.deleted]
    wiped_until = max(wipes) if wipes else None
    return any(
        m.created and not m.deleted and (wiped_until is None or stamp(m.marked_at) > wiped_until)
        for m in mine
        if m.no_show_uri is not None
    )


def booking_status(record: InviteeRecord, marks: Iterable[NoShowMark]) -> BookingStatus:
    """One booking's status: canceled wins over a no-show mark (a canceled meeting cannot be
    missed); a canceled booking that was moved is ``rescheduled``."""
    if record.canceled:
        return "rescheduled" if record.rescheduled else "cancelled"
    return "no_show" if is_no_show(record.invitee_uri, marks) else "booked"
