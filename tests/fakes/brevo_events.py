"""``POST /events``: record the event; ``contact_properties`` update an existing contact.
``GET /events``: the recorded events, filtered and paged like Brevo's (newest ``event_date``
first).

Whether Brevo creates an unknown contact from an event is undocumented; the fake does not (the
event is still recorded, with ``contact_id`` None). An event sent without ``event_date`` is dated
when it was received, as Brevo documents.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from multidict import MultiMapping

from tests.fakes.brevo_ops import BrevoError, Reply, find_contact, merge_attributes
from tests.fakes.brevo_records import EventRecord
from tests.fakes.brevo_state import FakeBrevo, iso_now


def create_event(state: FakeBrevo, body: dict[str, Any], seq: int) -> Reply:
    tag = (body.get("event_properties") or {}).get("connector_event_id")
    if tag is not None and str(tag) in state.rejected_batch_items:
        raise BrevoError(400, "invalid_parameter", "Injected item failure")
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


def instant(value: str, field: str) -> datetime:
    """``YYYY-MM-DD`` or RFC 3339, as Brevo's ``startDate``/``endDate`` and ``modifiedSince``
    accept; the fake's own timestamps read the same way."""
    try:
        if len(value) == 10:
            return datetime.fromisoformat(value + "T00:00:00+00:00")
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BrevoError(400, "invalid_parameter", f"{field} is not a valid date") from None
    if parsed.tzinfo is None:
        raise BrevoError(400, "invalid_parameter", f"{field} needs a time zone")
    return parsed


def _dated(event: EventRecord) -> datetime:
    return datetime.fromisoformat((event.event_date or event.received_at).replace("Z", "+00:00"))


def get_events(state: FakeBrevo, query: MultiMapping[str] | Mapping[str, str]) -> Reply:
    names = set(query.getall("event_name", [])) if isinstance(query, MultiMapping) else set()
    contact_ids = (
        {int(v) for v in query.getall("contact_id", [])}
        if isinstance(query, MultiMapping)
        else set()
    )
    start, end = query.get("startDate"), query.get("endDate")
    if (start is None) != (end is None):
        raise BrevoError(400, "invalid_parameter", "startDate and endDate go together")
    lo = instant(start, "startDate") if start else None
    hi = instant(end, "endDate") if end else None
    if lo is not None and hi is not None and lo > hi:
        raise BrevoError(400, "invalid_parameter", "startDate must be before endDate")
    if hi is not None and len(end or "") == 10:
        hi = hi.replace(hour=23, minute=59, second=59, microsecond=999999)
    found = [
        e
        for e in state.events
        if (not names or e.event_name in names)
        and (not contact_ids or e.contact_id in contact_ids)
        and (lo is None or hi is None or lo <= _dated(e) <= hi)
    ]
    found.sort(key=_dated, reverse=True)
    offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
    page = found[offset : offset + limit]
    return 200, {
        "count": len(found),
        "events": [
            {
                "event_name": e.event_name,
                "event_date": (e.event_date or e.received_at),
                "event_properties": e.event_properties,
                **({"contact_id": e.contact_id} if e.contact_id is not None else {}),
            }
            for e in page
        ],
    }
