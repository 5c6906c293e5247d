"""Build and send signed example webhooks, like ``stripe trigger``.

Payloads start from Calendly's own examples (``calendly_brevo/examples/``) with fresh URIs, so
each call is a new logical event unless ``invitee_uri`` is given (then it is a redelivery).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from calendly_brevo.private_files import private_dir
from calendly_brevo.signature import HEADER, sign
from calendly_brevo.times import parse_time

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


@dataclass(frozen=True)
class Cancellation:
    """How an ``invitee.canceled`` example is cancelled: part of a reschedule or not, and why."""

    rescheduled: bool = False
    reason: str = ""


def build_event(
    event: str,
    *,
    email: str = "ada@example.com",
    name: str | None = None,
    invitee_uri: str | None = None,
    event_type_uri: str | None = None,
    start_time: datetime | None = None,
    old_invitee: str | None = None,
    cancel: Cancellation = Cancellation(),
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
        payload["rescheduled"] = cancel.rescheduled
        payload["new_invitee"] = (
            f"{API}/scheduled_events/{_id()}/invitees/{_id()}" if cancel.rescheduled else None
        )
        payload["cancellation"] = {
            "canceled_by": full,
            "reason": cancel.reason,
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


# --- the same booking again (``simulate … --same-booking``) --------------------------------------
#: Per email, the last booking ``simulate`` created (its whole webhook body) and the no-show
#: mark it last set, so a follow-up cancels, moves or marks *that* booking. A private file in
#: the data directory: it holds test emails, and only ``simulate`` reads it.
MEMORY_FILE = "simulate-bookings.json"


class NoBookingToFollow(LookupError):
    """``--same-booking`` for an email ``simulate`` never booked (here, with this data dir)."""


def _memory(data_dir: Path) -> dict[str, Any]:
    path = data_dir / MEMORY_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def remember(data_dir: Path, doc: dict[str, Any]) -> None:
    """Keep ``doc`` as its invitee's last booking (``invitee.created``) or no-show mark."""
    payload = doc.get("payload") or {}
    email = payload.get("email")
    if not isinstance(email, str) or not email:
        return
    key = email.strip().lower()
    memory = _memory(data_dir)
    entry = memory.setdefault(key, {})
    if doc.get("event") == "invitee.created":
        entry["booking"] = doc
        entry.pop("no_show", None)
    elif doc.get("event") == "invitee_no_show.created":
        entry["no_show"] = payload.get("no_show")
    elif doc.get("event") == "invitee_no_show.deleted":
        entry.pop("no_show", None)
    else:
        return
    private_dir(data_dir)
    path = data_dir / MEMORY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(memory, f)
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as(event: str, booking: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(booking)
    doc["event"] = event
    doc["created_at"] = _now()
    doc["payload"]["updated_at"] = doc["created_at"]
    return doc


def _canceled(
    booking: dict[str, Any], *, reason: str, new_invitee: str | None = None
) -> dict[str, Any]:
    doc = _as("invitee.canceled", booking)
    payload = doc["payload"]
    payload["status"] = "canceled"
    payload["rescheduled"] = new_invitee is not None
    payload["new_invitee"] = new_invitee
    payload["cancellation"] = {
        "canceled_by": payload.get("name") or "",
        "reason": reason,
        "canceler_type": "invitee",
        "created_at": doc["created_at"],
    }
    return doc


def _moved(booking: dict[str, Any]) -> dict[str, Any]:
    """The new booking of a reschedule: a day later, with ``old_invitee`` set."""
    old = booking["payload"]
    scheduled = old.get("scheduled_event") or {}
    start = parse_time(scheduled.get("start_time")) or datetime.now(UTC)
    doc = build_event(
        "invitee.created",
        email=old["email"],
        name=old.get("name"),
        event_type_uri=scheduled.get("event_type"),
        start_time=start + timedelta(days=1),
        old_invitee=old["uri"],
    )
    doc["payload"]["questions_and_answers"] = old.get("questions_and_answers") or []
    return doc


def same_booking(
    data_dir: Path, event: str, email: str, *, rescheduled: bool = False, reason: str = ""
) -> list[dict[str, Any]]:
    """The webhook bodies that do ``event`` to the booking ``simulate`` last created for
    ``email``: a cancel (``rescheduled``: the cancel half of a move), a no-show mark or its
    removal, or, for ``invitee.created``, a reschedule (the cancel half, then the new booking)."""
    entry = _memory(data_dir).get(email.strip().lower()) or {}
    booking = entry.get("booking")
    if not isinstance(booking, dict):
        raise NoBookingToFollow(
            f"simulate has not created a booking for {email} (with this data directory)"
        )
    if event == "invitee.created":
        new = _moved(booking)
        return [_canceled(booking, reason=reason, new_invitee=new["payload"]["uri"]), new]
    if event == "invitee.canceled":
        new_invitee = f"{API}/scheduled_events/{_id()}/invitees/{_id()}" if rescheduled else None
        return [_canceled(booking, reason=reason, new_invitee=new_invitee)]
    if event == "invitee_no_show.created":
        doc = _as(event, booking)
        doc["payload"]["no_show"] = {"uri": f"{API}/invitee_no_shows/{_id()}", "created_at": _now()}
        return [doc]
    if event == "invitee_no_show.deleted":
        mark = entry.get("no_show")
        if not isinstance(mark, dict):
            raise NoBookingToFollow(f"simulate has not marked {email}'s booking as a no-show")
        doc = _as(event, booking)
        doc["payload"]["no_show"] = mark
        return [doc]
    raise ValueError(f"--same-booking does not apply to {event}")
