"""Build and send signed example webhooks, like ``stripe trigger``.

Payloads start from Calendly's own examples (``calendly_brevo/examples/``) with fresh URIs, so
each call is a new logical event unless ``invitee_uri`` is given (then it is a redelivery).
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import httpx

from calendly_brevo.signature import HEADER, sign

EVENTS = (
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
    "routing_form_submission.created",
)
API = "https://api.calendly.com"


def example(event: str) -> dict[str, Any]:
    text = resources.files("calendly_brevo.examples").joinpath(f"{event}.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def _id() -> str:
    return secrets.token_hex(8).upper()


def build_event(
    event: str,
    *,
    email: str = "ada@example.com",
    name: str | None = None,
    invitee_uri: str | None = None,
    event_type_uri: str | None = None,
    start_time: datetime | None = None,
    rescheduled: bool = False,
    old_invitee: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; choose one of {', '.join(EVENTS)}")
    doc = copy.deepcopy(example(event))
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc["created_at"] = now.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    payload = doc["payload"]
    if event == "routing_form_submission.created":
        payload["uri"] = f"{API}/routing_form_submissions/{_id()}"
        payload["questions_and_answers"].append(
            {"question_uuid": _id(), "question": "Email", "answer": email}
        )
        return doc
    scheduled = payload.get("scheduled_event") or {}
    event_uuid = _id()
    scheduled["uri"] = f"{API}/scheduled_events/{event_uuid}"
    start = start_time or (now + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    scheduled["start_time"] = start.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    scheduled["end_time"] = (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    if event_type_uri:
        scheduled["event_type"] = event_type_uri
    payload["scheduled_event"] = scheduled
    payload["event"] = scheduled["uri"]
    payload["uri"] = invitee_uri or f"{scheduled['uri']}/invitees/{_id()}"
    payload["email"] = email
    full = name or email.split("@")[0].replace(".", " ").title()
    payload["name"] = full
    first, _, last = full.partition(" ")
    payload["first_name"], payload["last_name"] = first, last or None
    payload["created_at"] = payload["updated_at"] = stamp
    payload["old_invitee"] = old_invitee
    if event == "invitee.canceled":
        payload["status"] = "canceled"
        payload["rescheduled"] = rescheduled
        payload["new_invitee"] = (
            f"{API}/scheduled_events/{_id()}/invitees/{_id()}" if rescheduled else None
        )
        payload["cancellation"] = {
            "canceled_by": full,
            "reason": reason,
            "canceler_type": "invitee",
            "created_at": stamp,
        }
    if event.startswith("invitee_no_show"):
        payload["no_show"] = {"uri": f"{API}/invitee_no_shows/{_id()}", "created_at": stamp}
    return doc


def send(url: str, key: str, doc: dict[str, Any], *, timeout: float = 10.0) -> httpx.Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(key, body, int(time.time()))}
    return httpx.post(url, content=body, headers=headers, timeout=timeout)
