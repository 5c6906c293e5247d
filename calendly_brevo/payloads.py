"""Calendly webhook payloads as tolerant pydantic models: the envelope, an invitee, a routing
form submission.

Parsing is tolerant on purpose. Real deliveries differ from Calendly's examples: unknown fields
are kept (``extra="allow"``), ``first_name``/``last_name`` are null unless the event type splits
the name, ``cancellation.reason`` may be ``""``, payloads from before 2023 have no embedded
``scheduled_event``, ``no_show`` is usually null. A text field that arrives with the wrong JSON
type becomes ``None`` instead of failing the event; only what the connector cannot work without
(the envelope, an invitee's URI and email) raises :class:`~calendly_brevo.errors.UnmappableEvent`.

The models are validated once per event, by :func:`calendly_brevo.events.read_event`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def loose_str(value: Any) -> Any:
    """Strings stay, numbers become text, anything else (objects, lists) becomes ``None``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return None


def _null_is_empty(value: Any) -> Any:
    return [] if value is None else value


def _null_is_false(value: Any) -> Any:
    return False if value is None else value


def _object_or_none(value: Any) -> Any:
    return value if isinstance(value, dict) else None


Text = Annotated[str | None, BeforeValidator(loose_str)]


class Tolerant(BaseModel):
    """Keeps unknown fields; missing ones default to ``None``."""

    model_config = ConfigDict(extra="allow", frozen=True)


class QuestionAnswer(Tolerant):
    question: Text = None
    answer: Text = None
    position: int | None = None
    question_uuid: Text = None


class Tracking(Tolerant):
    utm_campaign: Text = None
    utm_source: Text = None
    utm_medium: Text = None
    utm_content: Text = None
    utm_term: Text = None
    salesforce_uuid: Text = None


class Cancellation(Tolerant):
    canceled_by: Text = None
    reason: Text = None
    canceler_type: Text = None
    created_at: Text = None


class NoShow(Tolerant):
    uri: Text = None
    created_at: Text = None


class Location(Tolerant):
    type: Text = None
    location: Text = None
    join_url: Text = None


class ScheduledEvent(Tolerant):
    uri: Text = None
    name: Text = None
    status: Text = None
    start_time: Text = None
    end_time: Text = None
    event_type: Text = None
    location: Annotated[Location | None, BeforeValidator(_object_or_none)] = None
    cancellation: Annotated[Cancellation | None, BeforeValidator(_object_or_none)] = None


QAList = Annotated[list[QuestionAnswer], BeforeValidator(_null_is_empty)]


class InviteePayload(Tolerant):
    """``payload`` of ``invitee.*`` and ``invitee_no_show.*`` (Calendly's Invitee)."""

    uri: Text = None
    email: Text = None
    name: Text = None
    first_name: Text = None
    last_name: Text = None
    status: Text = None
    timezone: Text = None
    #: URI of the scheduled event (a string, not the embedded object).
    event: Text = None
    created_at: Text = None
    updated_at: Text = None
    questions_and_answers: QAList = []
    tracking: Annotated[Tracking | None, BeforeValidator(_object_or_none)] = None
    text_reminder_number: Text = None
    rescheduled: Annotated[bool, BeforeValidator(_null_is_false)] = False
    old_invitee: Text = None
    new_invitee: Text = None
    cancel_url: Text = None
    reschedule_url: Text = None
    routing_form_submission: Text = None
    scheduling_method: Text = None
    cancellation: Annotated[Cancellation | None, BeforeValidator(_object_or_none)] = None
    no_show: Annotated[NoShow | None, BeforeValidator(_object_or_none)] = None
    scheduled_event: Annotated[ScheduledEvent | None, BeforeValidator(_object_or_none)] = None


class RoutingFormSubmission(Tolerant):
    """``payload`` of ``routing_form_submission.created``."""

    uri: Text = None
    routing_form: Text = None
    questions_and_answers: QAList = []
    tracking: Annotated[Tracking | None, BeforeValidator(_object_or_none)] = None
    result: dict[str, Any] | None = None
    submitter: Text = None
    submitter_type: Text = None
    created_at: Text = None
    updated_at: Text = None


class Envelope(Tolerant):
    """``{event, created_at, created_by, payload}``: what Calendly POSTs."""

    event: str
    created_at: Text = None
    created_by: Text = None
    payload: dict[str, Any]
