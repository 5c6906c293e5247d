"""What one Calendly webhook would produce in Brevo under the current config, touching nothing.

``calendly-brevo preview PAYLOAD.json`` runs the worker's own rules (parse, identify, the state
record, :func:`~calendly_brevo.projection.project_contact`, the custom event and the sync
switches) on one payload, as if it were the person's only event: no store is read, no queue or
Brevo is called. The live contact can differ when the store holds other bookings of the same
email (an active one keeps a cancelled person ``booked``); ``trace`` shows that side.

Accepted input: a webhook body (``{"event", "created_at", "payload"}``), or the answer of
Calendly's ``GET /sample_webhook_data``, which is that body (some clients wrap it in
``{"resource": …}``: unwrapped here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from calendly_brevo.config import Rules
from calendly_brevo.errors import UnmappableEvent
from calendly_brevo.events import (
    HANDLED_EVENTS,
    INVITEE_EVENTS,
    ROUTING_FORM_SUBMITTED,
    envelope_from_dict,
    read_event,
)
from calendly_brevo.payloads import Envelope
from calendly_brevo.projection import (
    BrevoEvent,
    ContactProjection,
    custom_event,
    effects_enabled,
    project_contact,
    routing_form_contact,
)
from calendly_brevo.state import mark_from_event, record_from_event


class PreviewInputError(ValueError):
    """The file is not a Calendly webhook body (the message says what is wrong)."""


@dataclass(frozen=True)
class Preview:
    event_name: str
    event_id: str | None
    email: str | None
    #: ``None``: no contact upsert (see ``notes`` for why).
    contact: ContactProjection | None
    #: ``None``: no custom event (see ``notes``).
    event: BrevoEvent | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        contact = self.contact
        return {
            "event_name": self.event_name,
            "event_id": self.event_id,
            "email": self.email,
            "contact": None
            if contact is None
            else {
                "email": contact.email,
                "attributes": contact.attributes,
                "list_ids": list(contact.list_ids),
                "unlink_list_ids": list(contact.unlink_list_ids),
                "status": contact.status,
            },
            "event": None
            if self.event is None
            else {
                "event_name": self.event.name,
                "event_date": self.event.event_date,
                "email": self.event.email,
                "properties": self.event.properties,
            },
            "notes": list(self.notes),
        }


def webhook_body(data: Any) -> Any:
    """The webhook body in ``data``: ``data`` itself, or what a ``{"resource": …}`` wrapper of a
    ``sample_webhook_data`` answer holds."""
    if isinstance(data, dict) and isinstance(data.get("resource"), dict) and "event" not in data:
        return data["resource"]
    return data


def load_payload(text: str) -> Envelope:
    """Parse a webhook body or a ``sample_webhook_data`` answer."""
    try:
        data = webhook_body(json.loads(text))
    except ValueError as exc:
        raise PreviewInputError(f"not JSON: {exc}") from None
    try:
        return envelope_from_dict(data)
    except UnmappableEvent as exc:
        raise PreviewInputError(str(exc)) from None


def _switch_notes(event_name: str, rules: Rules) -> tuple[bool, bool, list[str]]:
    contact_on, event_on = effects_enabled(event_name, rules)
    notes: list[str] = []
    if not rules.enabled:
        notes.append("connectors.calendly.enabled is false: nothing is pushed")
    elif not contact_on and not event_on and event_name in HANDLED_EVENTS:
        notes.append(f"the sync switches push nothing for {event_name} (calendly.sync)")
    elif not contact_on:
        notes.append("no contact upsert: calendly.sync.contacts (or the event's switch) is off")
    return contact_on, event_on, notes


def preview(env: Envelope, rules: Rules) -> Preview:
    """The Brevo effects of ``env`` alone. Raises :class:`UnmappableEvent` for a handled event
    the worker would dead-letter (the message is the dead letter's cause)."""
    event = read_event(env)
    ident = event.identity
    if ident.event_name not in HANDLED_EVENTS:
        return Preview(
            ident.event_name,
            None,
            None,
            None,
            None,
            (f"{ident.event_name} is not handled: the worker records it as ignored",),
        )
    contact_on, event_on, notes = _switch_notes(ident.event_name, rules)
    contact: ContactProjection | None = None
    record = None
    if ident.event_name == ROUTING_FORM_SUBMITTED:
        contact = routing_form_contact(event, rules) if contact_on else None
        if contact_on and contact is None:
            notes.append("no contact upsert: brevo.upsert_routing_form_submitters is off")
    elif ident.event_name in INVITEE_EVENTS:
        record = record_from_event(event)
        if record is None or not ident.email:
            raise UnmappableEvent("invitee has no email")
        mark = mark_from_event(event)
        if contact_on:
            contact = project_contact(ident.email, [record], [mark] if mark else [], rules)
        notes.append(
            "as if this were the person's only event: other stored bookings of the same "
            "email can change the status and lists"
        )
    sent = custom_event(event, record, rules)
    if sent is None and event_on and record is not None and record.canceled and record.rescheduled:
        notes.append("no custom event: a reschedule is not a cancellation")
    elif sent is None and event_on:
        notes.append(f"no custom event: brevo.events names none for {ident.event_name}")
    elif sent is None:
        notes.append("no custom event: calendly.sync.events (or the event's switch) is off")
    return Preview(ident.event_name, ident.event_id, ident.email, contact, sent, tuple(notes))
