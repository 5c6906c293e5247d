"""One person's timeline: "what happened to ada@example.com?" from what the connector stores.

:func:`trace` gathers, for an email (or the person behind an event id or invitee URI): every
event received (when, which event, source webhook/backfill/replay, the signing key that verified
it, event id, outcome, attempts, last error, which Brevo effects were recorded), every Brevo call
made for those events with its status (failed attempts' included), the stored bookings and
no-show marks, the contact's current projection under today's config (what Brevo should hold),
what the connector last pushed to Brevo and when, and the dead letters about the person with the
command that replays each. It reads only; the console's contact page and ``calendly-brevo
trace`` print the same :class:`Trace`.

Said plainly, what it does not show: Brevo calls not made for an event (``resync``, ``forget``,
``brevo setup``), the key of an event stored before the connector recorded keys (``unknown``),
and more than the newest :data:`~calendly_brevo.brevo_calls.MAX_CALLS` calls of one event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.config import Rules
from calendly_brevo.db.models import DeadLetter, Invitee, ProcessedEvent
from calendly_brevo.events import normalize_email
from calendly_brevo.ledger import PushedProjection
from calendly_brevo.ledger.common import contact_state
from calendly_brevo.lifecycle import _person_dead_letters
from calendly_brevo.projection import project_contact
from calendly_brevo.state import is_no_show


@dataclass(frozen=True)
class Delivery:
    event_id: str
    event_name: str
    source: str
    status: str
    attempts: int
    received_at: str | None
    applied_at: str | None
    invitee_uri: str | None
    last_error: str | None
    effects: dict[str, Any]
    #: The label of the signing key that verified it (``signing_key:1a2b3c4d``), ``none
    #: (backfill)`` / ``none (replay)`` when nothing was verified, ``unknown`` when not recorded.
    signature_key: str = "unknown"


@dataclass(frozen=True)
class Booking:
    invitee_uri: str
    status: str
    event_type: str | None
    start_time: str | None
    rescheduled: bool
    no_show: bool


@dataclass(frozen=True)
class DeadLetterLine:
    id: int
    event_id: str | None
    event_name: str | None
    reason: str
    error: str
    created_at: str
    replayed_at: str | None
    replay: str | None


@dataclass
class Trace:
    email: str | None
    deliveries: list[Delivery] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)
    #: What Brevo should hold now (attributes, lists in / out, status), or ``None``.
    projection: dict[str, Any] | None = None
    dead_letters: list[DeadLetterLine] = field(default_factory=list)
    #: What the connector last pushed to Brevo (attributes, lists, when, from which event).
    last_pushed: dict[str, Any] | None = None
    #: Every Brevo call made for the person's events, oldest first: ``at``, ``method``,
    #: ``route`` (a template: no email), ``status`` (HTTP status, ``error``, ``dry_run``),
    #: ``ms``, ``attempt``, and the ``event_id`` / ``event_name`` it was made for.
    brevo_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.deliveries or self.bookings or self.dead_letters)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "found": self.found}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _email_for(s: Session, event_id: str | None, invitee_uri: str | None) -> str | None:
    if invitee_uri:
        found = s.scalar(select(Invitee.email).where(Invitee.invitee_uri == invitee_uri))
        if found:
            return found
        found = s.scalar(
            select(ProcessedEvent.email).where(ProcessedEvent.invitee_uri == invitee_uri)
        )
        if found:
            return found
    if event_id:
        return s.scalar(select(ProcessedEvent.email).where(ProcessedEvent.event_id == event_id))
    return None


def _key(row: ProcessedEvent) -> str:
    if row.signature_key:
        return row.signature_key
    return "unknown" if row.source == "webhook" else f"none ({row.source})"


def _rows(s: Session, email: str, uris: list[str]) -> list[ProcessedEvent]:
    return list(
        s.scalars(
            select(ProcessedEvent)
            .where(or_(ProcessedEvent.email == email, ProcessedEvent.invitee_uri.in_(uris)))
            .order_by(ProcessedEvent.received_at, ProcessedEvent.created_at)
        ).all()
    )


def _calls(rows: list[ProcessedEvent]) -> list[dict[str, Any]]:
    calls = [
        {**call, "event_id": r.event_id, "event_name": r.event_name}
        for r in rows
        for call in r.brevo_calls or ()
    ]
    return sorted(calls, key=lambda c: str(c.get("at", "")))


def _deliveries(rows: list[ProcessedEvent]) -> list[Delivery]:
    return [
        Delivery(
            event_id=r.event_id,
            event_name=r.event_name,
            source=r.source,
            status=r.status,
            attempts=r.attempts,
            received_at=_iso(r.received_at),
            applied_at=_iso(r.applied_at),
            invitee_uri=r.invitee_uri,
            last_error=r.last_error,
            effects={k: v for k, v in (r.effects or {}).items() if k in ("contact", "event")},
            signature_key=_key(r),
        )
        for r in rows
    ]


def _dead_letters(s: Session, email: str, event_ids: list[str]) -> list[DeadLetterLine]:
    ids = _person_dead_letters(s, email, event_ids)
    rows = s.scalars(select(DeadLetter).where(DeadLetter.id.in_(ids)).order_by(DeadLetter.id))
    return [
        DeadLetterLine(
            id=r.id,
            event_id=r.event_id,
            event_name=r.event_name,
            reason=r.reason,
            error=r.error,
            created_at=r.created_at.isoformat(),
            replayed_at=_iso(r.replayed_at),
            replay=None if r.replayed_at or not r.payload else f"calendly-brevo dlq replay {r.id}",
        )
        for r in rows
    ]


def trace(
    sessions: sessionmaker[Session],
    rules: Rules,
    *,
    email: str | None = None,
    event_id: str | None = None,
    invitee_uri: str | None = None,
    last_pushed: Callable[[str], PushedProjection | None] | None = None,
) -> Trace:
    """The timeline of the person named by ``email``, ``event_id`` or ``invitee_uri``;
    ``last_pushed`` is the ledger's :meth:`~calendly_brevo.ledger.Ledger.last_pushed`."""
    with sessions() as s:
        key = normalize_email(email) if email else _email_for(s, event_id, invitee_uri)
        if key is None and email:
            key = email.strip().lower()
        if key is None:
            return Trace(email=None)
        records, marks = contact_state(s, key)
        rows = _rows(s, key, [r.invitee_uri for r in records])
        deliveries, calls = _deliveries(rows), _calls(rows)
        dead = _dead_letters(s, key, [d.event_id for d in deliveries])
    bookings = [
        Booking(
            invitee_uri=r.invitee_uri,
            status=r.status,
            event_type=r.event_type_name or r.event_type_uri,
            start_time=r.start_time,
            rescheduled=bool(r.rescheduled),
            no_show=is_no_show(r.invitee_uri, marks),
        )
        for r in sorted(records, key=lambda r: r.start_time or "")
    ]
    projection = None
    if records:
        p = project_contact(key, records, marks, rules)
        projection = {
            "status": p.status,
            "attributes": p.attributes,
            "list_ids": list(p.list_ids),
            "unlink_list_ids": list(p.unlink_list_ids),
        }
    pushed = last_pushed(key) if last_pushed is not None else None
    return Trace(key, deliveries, bookings, projection, dead, _pushed(pushed), calls)


def _pushed(p: PushedProjection | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "attributes": p.attributes,
        "list_ids": list(p.list_ids),
        "pushed_at": p.pushed_at.isoformat(),
        "event_id": p.event_id,
        "mapping_fingerprint": p.mapping_fingerprint,
    }
