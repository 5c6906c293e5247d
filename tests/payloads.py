"""Realistic Calendly webhook bodies for tests, built from Calendly's own example payloads.

Every builder starts from the example JSON in ``tests/fixtures/calendly-webhook-examples``
(override the directory with ``CALENDLY_EXAMPLES_DIR``) and returns a fresh envelope dict
``{event, created_at, created_by, payload}``; :func:`body` turns one into the raw bytes a
webhook delivery carries. Defaults describe one booking of ``test@example.com``; pass other
URIs to describe other bookings. Times are ISO 8601 strings as Calendly sends them.

    created = invitee_created(email="ann@example.com", invitee_uri=invitee_uri("EV1", "INV1"))
    old_cancel, new_create = reschedule_pair(old_invitee_uri=..., new_invitee_uri=...)
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calendly_brevo.config import Settings

API = "https://api.calendly.com"
HOST_USER = f"{API}/users/AAAAAAAAAAAAAAAA"

DEFAULT_EMAIL = "test@example.com"
DEFAULT_EVENT_TYPE_URI = f"{API}/event_types/GBGBDCAADAEDCRZ2"
DEFAULT_EVENT_TYPE_NAME = "15 Minute Meeting"
DEFAULT_START = "2030-01-10T15:00:00.000000Z"
DEFAULT_CREATED_AT = "2030-01-01T10:00:00.000000Z"

Questions = Sequence[tuple[str, str]] | Sequence[Mapping[str, Any]]


def examples_dir() -> Path:
    override = os.environ.get("CALENDLY_EXAMPLES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "fixtures" / "calendly-webhook-examples"


@cache
def _example_text(event_name: str) -> str:
    return (examples_dir() / f"{event_name}.json").read_text(encoding="utf-8")


def example(event_name: str) -> dict[str, Any]:
    """Calendly's example envelope for ``event_name`` (a fresh copy)."""
    data: dict[str, Any] = json.loads(_example_text(event_name))
    return data


def body(envelope: Mapping[str, Any]) -> bytes:
    """The raw bytes of a delivery."""
    return json.dumps(envelope, separators=(",", ":")).encode()


# --- URIs --------------------------------------------------------------------------------------
def scheduled_event_uri(event: str = "EVENT0001") -> str:
    return f"{API}/scheduled_events/{event}"


def invitee_uri(event: str = "EVENT0001", invitee: str = "INVITEE0001") -> str:
    return f"{scheduled_event_uri(event)}/invitees/{invitee}"


def event_type_uri(event_type: str = "GBGBDCAADAEDCRZ2") -> str:
    return f"{API}/event_types/{event_type}"


def no_show_uri(mark: str = "NOSHOW0001") -> str:
    return f"{API}/invitee_no_shows/{mark}"


def _event_of(uri: str) -> str:
    """The scheduled event URI an invitee URI belongs to."""
    head, sep, _ = uri.partition("/invitees/")
    return head if sep else scheduled_event_uri()


def _plus(ts: str, minutes: int) -> str:
    parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return (parsed + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _questions(questions: Questions) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for position, qa in enumerate(questions):
        if isinstance(qa, Mapping):
            out.append(dict(qa))
        else:
            question, answer = qa
            out.append({"question": question, "answer": answer, "position": position})
    return out


def _tracking(tracking: Mapping[str, str | None] | None) -> dict[str, str | None]:
    base: dict[str, str | None] = dict.fromkeys(
        ("utm_campaign", "utm_source", "utm_medium", "utm_content", "utm_term", "salesforce_uuid")
    )
    base.update(tracking or {})
    return base


def _invitee(
    event_name: str,
    template: str,
    *,
    email: str,
    invitee_uri: str,
    event_type_uri: str | None,
    event_type_name: str | None,
    scheduled_event_uri: str | None,
    start_time: str,
    end_time: str | None,
    timezone: str | None,
    name: str | None,
    first_name: str | None,
    last_name: str | None,
    questions: Questions,
    tracking: Mapping[str, str | None] | None,
    old_invitee: str | None,
    created_at: str,
    updated_at: str | None,
    text_reminder_number: str | None,
    join_url: str | None,
    with_scheduled_event: bool,
    envelope_created_at: str | None,
) -> dict[str, Any]:
    env = example(template)
    env["event"] = event_name
    p = env["payload"]
    event_uri = scheduled_event_uri or _event_of(invitee_uri)
    p.update(
        email=email,
        uri=invitee_uri,
        event=event_uri,
        name=name,
        first_name=first_name,
        last_name=last_name,
        timezone=timezone,
        questions_and_answers=_questions(questions),
        tracking=_tracking(tracking),
        old_invitee=old_invitee,
        new_invitee=None,
        rescheduled=False,
        status="active",
        created_at=created_at,
        updated_at=updated_at or created_at,
        text_reminder_number=text_reminder_number,
        cancel_url=f"https://calendly.com/cancellations/{invitee_uri.rsplit('/', 1)[-1]}",
        reschedule_url=f"https://calendly.com/reschedulings/{invitee_uri.rsplit('/', 1)[-1]}",
    )
    p.pop("cancellation", None)
    p.pop("no_show", None)
    if with_scheduled_event:
        se = p["scheduled_event"]
        se.update(
            uri=event_uri,
            name=event_type_name,
            start_time=start_time,
            end_time=end_time or _plus(start_time, 30),
            event_type=event_type_uri,
        )
        if join_url:
            se["location"] = {"type": "zoom", "status": "pushed", "join_url": join_url}
    else:
        p.pop("scheduled_event", None)
    env["created_at"] = envelope_created_at or updated_at or created_at
    return env


def invitee_created(
    *,
    email: str = DEFAULT_EMAIL,
    invitee_uri: str = invitee_uri(),
    event_type_uri: str | None = DEFAULT_EVENT_TYPE_URI,
    event_type_name: str | None = DEFAULT_EVENT_TYPE_NAME,
    scheduled_event_uri: str | None = None,
    start_time: str = DEFAULT_START,
    end_time: str | None = None,
    timezone: str | None = "America/New_York",
    name: str | None = "John Doe",
    first_name: str | None = None,
    last_name: str | None = None,
    questions: Questions = (),
    tracking: Mapping[str, str | None] | None = None,
    old_invitee: str | None = None,
    created_at: str = DEFAULT_CREATED_AT,
    updated_at: str | None = None,
    text_reminder_number: str | None = None,
    join_url: str | None = None,
    with_scheduled_event: bool = True,
) -> dict[str, Any]:
    """``invitee.created``; with ``old_invitee`` it is the new half of a reschedule.
    ``questions`` are ``(question, answer)`` pairs (or raw Calendly dicts);
    ``with_scheduled_event=False`` gives the pre-2023 shape without ``scheduled_event``."""
    return _invitee(
        "invitee.created",
        "invitee.created",
        email=email,
        invitee_uri=invitee_uri,
        event_type_uri=event_type_uri,
        event_type_name=event_type_name,
        scheduled_event_uri=scheduled_event_uri,
        start_time=start_time,
        end_time=end_time,
        timezone=timezone,
        name=name,
        first_name=first_name,
        last_name=last_name,
        questions=questions,
        tracking=tracking,
        old_invitee=old_invitee,
        created_at=created_at,
        updated_at=updated_at,
        text_reminder_number=text_reminder_number,
        join_url=join_url,
        with_scheduled_event=with_scheduled_event,
        envelope_created_at=None,
    )


def invitee_canceled(
    *,
    email: str = DEFAULT_EMAIL,
    invitee_uri: str = invitee_uri(),
    event_type_uri: str | None = DEFAULT_EVENT_TYPE_URI,
    event_type_name: str | None = DEFAULT_EVENT_TYPE_NAME,
    scheduled_event_uri: str | None = None,
    start_time: str = DEFAULT_START,
    timezone: str | None = "America/New_York",
    name: str | None = "John Doe",
    first_name: str | None = None,
    last_name: str | None = None,
    questions: Questions = (),
    tracking: Mapping[str, str | None] | None = None,
    old_invitee: str | None = None,
    created_at: str = DEFAULT_CREATED_AT,
    canceled_at: str = "2030-01-05T09:00:00.000000Z",
    rescheduled: bool = False,
    new_invitee: str | None = None,
    reason: str | None = "Meeting Conflict",
    canceler_type: str = "invitee",
    canceled_by: str | None = None,
    with_scheduled_event: bool = True,
) -> dict[str, Any]:
    """``invitee.canceled``; ``rescheduled=True`` with ``new_invitee`` is the old half of a
    reschedule. ``reason=""`` is what a host cancel without reason looks like."""
    env = _invitee(
        "invitee.canceled",
        "invitee.canceled",
        email=email,
        invitee_uri=invitee_uri,
        event_type_uri=event_type_uri,
        event_type_name=event_type_name,
        scheduled_event_uri=scheduled_event_uri,
        start_time=start_time,
        end_time=None,
        timezone=timezone,
        name=name,
        first_name=first_name,
        last_name=last_name,
        questions=questions,
        tracking=tracking,
        old_invitee=old_invitee,
        created_at=created_at,
        updated_at=canceled_at,
        text_reminder_number=None,
        join_url=None,
        with_scheduled_event=with_scheduled_event,
        envelope_created_at=None,
    )
    p = env["payload"]
    p.update(status="canceled", rescheduled=rescheduled, new_invitee=new_invitee)
    p["cancellation"] = {
        "canceled_by": canceled_by or (name if canceler_type == "invitee" else "Host Person"),
        "reason": reason,
        "canceler_type": canceler_type,
        "created_at": canceled_at,
    }
    return env


def no_show_created(
    *,
    email: str = DEFAULT_EMAIL,
    invitee_uri: str = invitee_uri(),
    no_show_uri: str = no_show_uri(),
    marked_at: str = "2030-01-10T16:00:00.000000Z",
    start_time: str = DEFAULT_START,
    event_type_uri: str | None = DEFAULT_EVENT_TYPE_URI,
    event_type_name: str | None = DEFAULT_EVENT_TYPE_NAME,
    name: str | None = "John Doe",
    created_at: str = DEFAULT_CREATED_AT,
) -> dict[str, Any]:
    """``invitee_no_show.created``: the host marked the invitee as a no-show."""
    env = _invitee(
        "invitee_no_show.created",
        "invitee_no_show.created",
        email=email,
        invitee_uri=invitee_uri,
        event_type_uri=event_type_uri,
        event_type_name=event_type_name,
        scheduled_event_uri=None,
        start_time=start_time,
        end_time=None,
        timezone="America/New_York",
        name=name,
        first_name=None,
        last_name=None,
        questions=(),
        tracking=None,
        old_invitee=None,
        created_at=created_at,
        updated_at=None,
        text_reminder_number=None,
        join_url=None,
        with_scheduled_event=True,
        envelope_created_at=marked_at,
    )
    env["payload"]["no_show"] = {"uri": no_show_uri, "created_at": marked_at}
    return env


def no_show_deleted(
    *,
    email: str = DEFAULT_EMAIL,
    invitee_uri: str = invitee_uri(),
    no_show_uri: str | None = None,
    marked_at: str = "2030-01-10T16:00:00.000000Z",
    deleted_at: str = "2030-01-10T17:00:00.000000Z",
    start_time: str = DEFAULT_START,
    name: str | None = "John Doe",
    created_at: str = DEFAULT_CREATED_AT,
) -> dict[str, Any]:
    """``invitee_no_show.deleted``. Like Calendly's example, the payload has no ``no_show``
    unless ``no_show_uri`` is given (then it names the deleted mark)."""
    env = _invitee(
        "invitee_no_show.deleted",
        "invitee_no_show.deleted",
        email=email,
        invitee_uri=invitee_uri,
        event_type_uri=DEFAULT_EVENT_TYPE_URI,
        event_type_name=DEFAULT_EVENT_TYPE_NAME,
        scheduled_event_uri=None,
        start_time=start_time,
        end_time=None,
        timezone="America/New_York",
        name=name,
        first_name=None,
        last_name=None,
        questions=(),
        tracking=None,
        old_invitee=None,
        created_at=created_at,
        updated_at=None,
        text_reminder_number=None,
        join_url=None,
        with_scheduled_event=True,
        envelope_created_at=deleted_at,
    )
    if no_show_uri is not None:
        env["payload"]["no_show"] = {"uri": no_show_uri, "created_at": marked_at}
    return env


def reschedule_pair(
    *,
    email: str = DEFAULT_EMAIL,
    new_email: str | None = None,
    old_invitee_uri: str = invitee_uri("EVENT0001", "INVITEE0001"),
    new_invitee_uri: str = invitee_uri("EVENT0002", "INVITEE0002"),
    old_start: str = DEFAULT_START,
    new_start: str = "2030-01-17T15:00:00.000000Z",
    event_type_uri: str | None = DEFAULT_EVENT_TYPE_URI,
    event_type_name: str | None = DEFAULT_EVENT_TYPE_NAME,
    name: str | None = "John Doe",
    questions: Questions = (),
    created_at: str = DEFAULT_CREATED_AT,
    rescheduled_at: str = "2030-01-05T09:00:00.000000Z",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(canceled_old, created_new)``: the two webhooks one reschedule sends."""
    canceled = invitee_canceled(
        email=email,
        invitee_uri=old_invitee_uri,
        event_type_uri=event_type_uri,
        event_type_name=event_type_name,
        start_time=old_start,
        name=name,
        questions=questions,
        created_at=created_at,
        canceled_at=rescheduled_at,
        rescheduled=True,
        new_invitee=new_invitee_uri,
        reason="",
    )
    created = invitee_created(
        email=new_email or email,
        invitee_uri=new_invitee_uri,
        event_type_uri=event_type_uri,
        event_type_name=event_type_name,
        start_time=new_start,
        name=name,
        questions=questions,
        old_invitee=old_invitee_uri,
        created_at=rescheduled_at,
    )
    return canceled, created


def group_event(
    emails: Iterable[str],
    *,
    event: str = "GROUP0001",
    event_type_uri: str | None = DEFAULT_EVENT_TYPE_URI,
    event_type_name: str | None = "Group Webinar",
    start_time: str = DEFAULT_START,
) -> list[dict[str, Any]]:
    """``invitee.created`` for several invitees of one scheduled event (one webhook each)."""
    return [
        invitee_created(
            email=email,
            invitee_uri=invitee_uri(event, f"GUEST{i:04d}"),
            event_type_uri=event_type_uri,
            event_type_name=event_type_name,
            start_time=start_time,
            name=f"Guest {i}",
        )
        for i, email in enumerate(emails)
    ]


def routing_form_submission(
    *,
    answers: Questions = (
        ("What is your email?", "lead@example.com"),
        ("What is your industry?", "IT & Software"),
    ),
    submission_uri: str = f"{API}/routing_form_submissions/AAAAAAAAAAAAAAAA",
    submitter: str | None = None,
    tracking: Mapping[str, str | None] | None = None,
    created_at: str = "2030-01-01T09:00:00.000Z",
) -> dict[str, Any]:
    """``routing_form_submission.created`` (fires whether or not the person books)."""
    env = example("routing_form_submission.created")
    p = env["payload"]
    qas = _questions(answers)
    for i, qa in enumerate(qas):
        qa.pop("position", None)
        qa.setdefault("question_uuid", f"00000000-0000-0000-0000-{i:012d}")
    p.update(
        uri=submission_uri,
        questions_and_answers=qas,
        submitter=submitter,
        submitter_type="Invitee" if submitter else None,
        tracking=_tracking(tracking),
        created_at=created_at,
        updated_at=created_at,
    )
    env["created_at"] = created_at
    return env


def event_type_created() -> dict[str, Any]:
    """An event the connector ignores (recorded and acked)."""
    return example("event_type.created")


def without(envelope: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """A copy of ``envelope`` whose payload lacks ``keys``."""
    env = copy.deepcopy(dict(envelope))
    for key in keys:
        env["payload"].pop(key, None)
    return env


def with_payload(envelope: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``envelope`` with payload fields replaced."""
    env = copy.deepcopy(dict(envelope))
    env["payload"].update(changes)
    return env


# --- settings for mapping tests ------------------------------------------------------------------
DEMO_EVENT_TYPE_URI = f"{API}/event_types/DEMO0001"

#: A config in the seed's shape: two event types mapped to lists, the seed's field mapping.
SEED_CONFIG: dict[str, Any] = {
    "connectors": {
        "calendly": {
            "event_mapping": {
                "discovery_call": {"list_id": 10, "event_type_uri": DEFAULT_EVENT_TYPE_URI},
                "demo": {"list_id": 11, "event_type_uri": DEMO_EVENT_TYPE_URI},
            }
        }
    },
    "field_mapping": {
        "name": "FIRSTNAME",
        "questions_and_answers": {"company": "COMPANY", "role": "JOB_TITLE", "phone": "SMS"},
        "event_type_name": "CALENDLY_EVENT_TYPE",
        "scheduled_at": "MEETING_DATE",
        "status": "BOOKING_STATUS",
    },
}


def settings(**overrides: Any) -> Settings:
    """:class:`calendly_brevo.config.Settings` from :data:`SEED_CONFIG`, with top-level
    sections replaced or deep-merged: ``settings(brevo={"list_moves": {...}})``."""
    from calendly_brevo.config import Settings

    def merge(base: Any, extra: Any) -> Any:
        if isinstance(base, dict) and isinstance(extra, dict):
            return {k: merge(base.get(k), v) for k, v in extra.items()} | {
                k: v for k, v in base.items() if k not in extra
            }
        return copy.deepcopy(extra)

    return Settings.model_validate(merge(copy.deepcopy(SEED_CONFIG), overrides))
