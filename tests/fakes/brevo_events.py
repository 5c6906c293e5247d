"""``POST /events``: record the event; ``contact_properties`` update an existing contact.

Whether Brevo creates an unknown contact from an event is undocumented; the fake does not (the
event is still recorded, with ``contact_id`` None)."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.brevo_ops import Reply, find_contact, merge_attributes
from tests.fakes.brevo_records import EventRecord
from tests.fakes.brevo_state import FakeBrevo, iso_now


def create_event(state: FakeBrevo, body: dict[str, Any], seq: int) -> Reply:
    identifiers = dict(body["identifiers"])
    contact = None
    for field, kind in (("email_id", "email_id"), ("ext_id", "ext_id"), ("phone_id", "phone_id")):
        if contact is None and isinstance(identifiers.get(field), str):
            contact = find_contact(state, identifiers[field], kind)
    properties = dict(body.get("contact_properties") or {})
    if contact is not None and properties:
        merged, ignored = merge_attributes(
            state, seq, contact.email, contact.attributes, properties
        )
        state.ignored_attributes.extend(ignored)
        contact.attributes = merged
        contact.modified_at = iso_now(state.clock)
    state.events.append(
        EventRecord(
            event_name=body["event_name"],
            identifiers=identifiers,
            event_properties=dict(body.get("event_properties") or {}),
            contact_properties=properties,
            event_date=body.get("event_date"),
            received_at=iso_now(state.clock),
            received_monotonic=time.monotonic(),
            request_seq=seq,
            contact_id=contact.id if contact is not None else None,
        )
    )
    return 204, None
