"""Strict checks beyond the spec that need account state or the spec's prose; a failure is
recorded as a violation like a spec mismatch (Brevo would ignore or reject the request)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

from tests.fakes.brevo_state import FakeBrevo

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EVENT_PROPERTIES_MAX = 50 * 1024


def is_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def strict_errors(state: FakeBrevo, operation_id: str, body: Any) -> list[str]:
    """What Brevo would ignore or reject that a correct client never sends."""
    if not isinstance(body, dict):
        return []
    errors: list[str] = []
    for key in ("attributes", "contact_properties"):
        values = body.get(key)
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            attribute = state.attributes.get(name)
            if attribute is not None and attribute.type == "date" and not is_date(value):
                errors.append(
                    f"{key}/{name}: {value!r} is not a YYYY-MM-DD date ({name} is a date attribute)"
                )
    if operation_id == "createEvent":
        name = body.get("event_name")
        if isinstance(name, str) and not _NAME.match(name):
            errors.append(f"event_name: {name!r} must be 1-255 characters of A-Z a-z 0-9 _ -")
        properties = body.get("event_properties")
        if isinstance(properties, dict):
            errors.extend(
                f"event_properties/{k}: key must be 1-255 characters of A-Z a-z 0-9 _ -"
                for k in properties
                if not _NAME.match(k)
            )
            if len(json.dumps(properties).encode()) > _EVENT_PROPERTIES_MAX:
                errors.append("event_properties: larger than 50 KB")
        event_date = body.get("event_date")
        if isinstance(event_date, str):
            try:
                datetime.fromisoformat(event_date)
            except ValueError:
                errors.append(f"event_date: {event_date!r} is not an ISO-8601 timestamp")
    if operation_id in ("addContactToList", "removeContactFromList"):
        given = [k for k in ("emails", "ids", "extIds", "all") if k in body]
        if len(given) != 1:
            errors.append("body: exactly one of emails, ids, extIds (or all, to remove) is needed")
    return errors
