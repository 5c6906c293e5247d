"""Custom events a dry run or a switch held back: ``resync --events`` lists them, ``--send``
sends each at most once (DESIGN invariants 2 and 7).

Derived from the stored events, nothing new is kept: an event is *held* when it is done as
``dry_run``, ``suppressed`` (a switch, the connector off, the event-type filter) or ``applied``
(its contact was pushed while ``sync.events`` was off), its effects record no custom event, its
payload is still stored (``storage.payload_retention_days`` prunes it), its person was not
forgotten, and today's config would send a custom event for it (:func:`custom_event`, the
event-type filter). So an event whose switch is still off is not listed: turn the switch on
first. ``--since`` bounds it by when the connector stored the event as done (``applied_at``).

Sending (:mod:`calendly_brevo.held_send`) takes the worker's own path
(:class:`~calendly_brevo.event_send.EventSender`) under the contact's lock, after reading the event
again: its record of the sent event marks it ``applied`` in one commit, so a second ``--send`` (or
one racing it) finds nothing to send. The event is marked in doubt before the request, so a run
killed mid-request makes the next one look the event up in Brevo first instead of sending it again;
a request that surely did not reach Brevo clears the mark. A failure is counted and left for the
next run (it is not a dead letter: the event itself is done).

Old automations must not fire by surprise: plain ``resync`` never sends events, and listing
is the default here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from calendly_brevo.config import Settings
from calendly_brevo.errors import PermanentError
from calendly_brevo.event_send import EVENT_IN_DOUBT
from calendly_brevo.events import EventIdentity, normalize_email, parse_envelope, read_event
from calendly_brevo.ledger import EventRow, Ledger
from calendly_brevo.mapping import event_type_synced
from calendly_brevo.projection import BrevoEvent, custom_event

PAGE = 500


@dataclass(frozen=True)
class HeldEvent:
    """One held custom event, as listed."""

    event_id: str
    #: Calendly's event name, and the Brevo custom event today's config would send.
    calendly_event: str
    brevo_event: str
    status: str
    #: ``suppressed``'s reason.
    reason: str | None
    held_at: datetime
    email: str
    event_date: str | None
    #: An earlier ``--send`` may have sent it: Brevo is asked before it is sent again.
    in_doubt: bool
    #: The contact lock the worker takes for this event (its email, else its id).
    lock_key: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "calendly_event": self.calendly_event,
            "brevo_event": self.brevo_event,
            "status": self.status,
            "reason": self.reason,
            "held_at": self.held_at.isoformat(),
            "email": self.email,
            "event_date": self.event_date,
            "in_doubt": self.in_doubt,
        }


@dataclass(frozen=True)
class Parsed:
    ident: EventIdentity
    event: BrevoEvent
    email: str

    @property
    def brevo_event(self) -> str:
        return self.event.name

    @property
    def event_date(self) -> str | None:
        return self.event.event_date


def parse_held(row: EventRow, ledger: Ledger, settings: Settings) -> Parsed | None:
    """What sending ``row``'s custom event needs, or ``None`` when today's config sends none."""
    if not row.payload:
        return None  # pruned, or a forgotten person's (stored without payload)
    try:
        webhook = read_event(parse_envelope(row.payload))
    except PermanentError:
        return None
    ident = webhook.identity
    if ident.invitee_uri and ledger.is_tombstoned(invitee_uri=ident.invitee_uri):
        return None
    record = None
    if ident.email:
        records, _ = ledger.contact_state(ident.email)
        record = next((r for r in records if r.invitee_uri == ident.invitee_uri), None)
    if record is not None and not event_type_synced(record, settings.rules.sync.event_types):
        return None
    event = custom_event(webhook, record, settings.rules)
    email = normalize_email(event.email) if event is not None and event.email else None
    if event is None or email is None:
        return None
    return Parsed(ident, event, email)


def held_events(
    ledger: Ledger, settings: Settings, since: datetime | None, limit: int | None = None
) -> Iterator[HeldEvent]:
    """The held custom events stored as done at or after ``since``, oldest first."""
    after: tuple[datetime, str] | None = None
    found = 0
    while True:
        rows = ledger.unsent_events(since, after, PAGE)
        for row in rows:
            parsed = parse_held(row, ledger, settings)
            if parsed is None or row.applied_at is None:
                continue
            yield HeldEvent(
                event_id=row.event_id,
                calendly_event=parsed.ident.event_name,
                brevo_event=parsed.brevo_event,
                status=row.status,
                reason=row.last_error if row.status == "suppressed" else None,
                held_at=row.applied_at,
                email=parsed.email,
                event_date=parsed.event_date,
                in_doubt=bool(row.effects.get(EVENT_IN_DOUBT)),
                lock_key=parsed.ident.email or row.event_id,
            )
            found += 1
            if limit is not None and found >= limit:
                return
        if len(rows) < PAGE:
            return
        last = rows[-1]
        assert last.applied_at is not None  # unsent_events lists done events only
        after = (last.applied_at, last.event_id)
