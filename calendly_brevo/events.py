"""Calendly webhook events: the one parse of a body at the edge, the event id, who it is about.

A body is decoded and its envelope checked (:func:`parse_envelope`), then its payload is
validated once into the model of its kind (:mod:`calendly_brevo.payloads`) and identified
(:func:`read_event`); everything downstream takes the resulting :class:`WebhookEvent`.

Event id (DESIGN invariant 2)::

    sha256("calendly-brevo/event-id" + json([version, event name, subject, no-show URI]))

``subject`` is the invitee URI for the four invitee events; the no-show URI is added only for
``invitee_no_show.*``. Retries, overlapping subscriptions and backfill replays of one logical
event therefore share one id. Events without an invitee use :func:`fallback_key`: the
submission URI for ``routing_form_submission.created``; for anything else the payload ``uri``
plus its ``updated_at``/``deleted_at``/``created_at`` (else the envelope's ``created_at``); a
payload without ``uri`` hashes its canonical JSON. Weak spot: an ``invitee_no_show.deleted``
without a ``no_show`` object (Calendly's own example has none) is identified by invitee URI
only, so marking, unmarking, marking and unmarking one invitee again dedups the second unmark.

Emails are NFC-normalised, stripped and lower-cased as a whole (local part too). Brevo matches
emails case-insensitively, and the connector keys invitee state by email, so ``John@X.com`` and
``john@x.com`` must land on one contact. ``casefold`` is not used: it rewrites ``ß`` to ``ss``
and would change the address. Plus-addressing and non-ASCII characters are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from calendly_brevo.errors import UnmappableEvent
from calendly_brevo.payloads import Envelope, InviteePayload, RoutingFormSubmission, loose_str
from calendly_brevo.pii import EMAIL_ADDRESS

INVITEE_CREATED: Final = "invitee.created"
INVITEE_CANCELED: Final = "invitee.canceled"
NO_SHOW_CREATED: Final = "invitee_no_show.created"
NO_SHOW_DELETED: Final = "invitee_no_show.deleted"
ROUTING_FORM_SUBMITTED: Final = "routing_form_submission.created"

#: Events whose payload is an invitee.
INVITEE_EVENTS: Final = frozenset(
    {INVITEE_CREATED, INVITEE_CANCELED, NO_SHOW_CREATED, NO_SHOW_DELETED}
)
#: Events the connector acts on. Anything else is recorded and acked as "ignored".
HANDLED_EVENTS: Final = INVITEE_EVENTS | {ROUTING_FORM_SUBMITTED}

#: Bump only together with a migration that rewrites stored ids: a new version re-processes
#: every replayed event once.
EVENT_ID_VERSION: Final = "v1"


@dataclass(frozen=True, slots=True)
class EventIdentity:
    event_id: str
    event_name: str
    invitee_uri: str | None
    #: Normalised (see module docstring); ``None`` for events that are not about a person.
    email: str | None
    no_show_uri: str | None = None

    @property
    def handled(self) -> bool:
        return self.event_name in HANDLED_EVENTS


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One webhook body parsed once, at the edge (:func:`read_event`): its envelope, who it is
    about, and its payload typed for its kind. The rules downstream (state, projection, custom
    events) read this and never the raw ``payload`` dict."""

    envelope: Envelope
    identity: EventIdentity
    #: The invitee of ``invitee.*`` and ``invitee_no_show.*``.
    invitee: InviteePayload | None = None
    #: The submission of ``routing_form_submission.created``.
    submission: RoutingFormSubmission | None = None

    @property
    def name(self) -> str:
        return self.envelope.event

    @property
    def created_at(self) -> str | None:
        return self.envelope.created_at


def decode_body(raw: bytes | str) -> Any:
    """The JSON document of a raw webhook body. Raises :class:`UnmappableEvent` (``not_json``)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnmappableEvent(f"webhook body is not JSON: {exc}", code="not_json") from None


def envelope_name(data: Any) -> str:
    """The event name of a decoded body shaped ``{"event": "…", "payload": {…}}``. Raises
    :class:`UnmappableEvent` (``bad_envelope``) saying what is missing. The receiver's check is
    looser on purpose (any string name is queued, so a signed body with a blank one is
    dead-lettered here with its body kept rather than refused)."""
    if not isinstance(data, dict):
        raise UnmappableEvent("webhook body is not a JSON object", code="bad_envelope")
    event = data.get("event")
    if not isinstance(event, str) or not event.strip():
        raise UnmappableEvent("webhook body has no 'event' name", code="bad_envelope")
    if not isinstance(data.get("payload"), dict):
        raise UnmappableEvent(
            f"{event}: 'payload' is missing or not an object", code="bad_envelope"
        )
    return event.strip()


def envelope_from_dict(data: Any) -> Envelope:
    """The envelope of an already decoded body (the worker's :func:`parse_envelope`, backfill,
    previews, tests). Raises :class:`UnmappableEvent` saying what is wrong."""
    event = envelope_name(data)
    try:
        return Envelope.model_validate({**data, "event": event})
    except ValidationError as exc:  # pragma: no cover - the checks above cover the required keys
        raise UnmappableEvent(f"{event}: bad envelope: {exc}", code="bad_envelope") from None


def parse_envelope(raw: bytes | str) -> Envelope:
    """Parse a raw webhook body. Raises :class:`UnmappableEvent` saying what is wrong."""
    return envelope_from_dict(decode_body(raw))


def invitee_payload(env: Envelope) -> InviteePayload:
    if "invitee" in env.payload and "email" not in env.payload:
        raise UnmappableEvent(
            f"{env.event}: Calendly API v1 payload shape (payload.invitee) is not supported",
            code="v1_payload",
        )
    try:
        return InviteePayload.model_validate(env.payload)
    except ValidationError as exc:
        raise UnmappableEvent(f"{env.event}: invitee payload has a bad shape: {exc}") from None


def routing_payload(env: Envelope) -> RoutingFormSubmission:
    try:
        return RoutingFormSubmission.model_validate(env.payload)
    except ValidationError as exc:
        raise UnmappableEvent(f"{env.event}: routing form payload has a bad shape: {exc}") from None


def normalize_email(value: str | None) -> str | None:
    """The address as the connector keys it, or ``None`` if it is not a usable address."""
    if value is None:
        return None
    email = unicodedata.normalize("NFC", value).strip().lower()
    if email.startswith("mailto:"):
        email = email[len("mailto:") :]
    return email if EMAIL_ADDRESS.fullmatch(email) else None


def _clean_uri(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def event_id(
    event_name: str,
    invitee_uri: str | None,
    no_show_uri: str | None = None,
    *,
    fallback: str | None = None,
) -> str:
    """Stable sha256 hex id of one logical event (see the module docstring)."""
    subject = _clean_uri(invitee_uri)
    if subject is None:
        if fallback is None:
            raise ValueError("event_id needs an invitee URI or a fallback key")
        subject = "fallback:" + fallback
    parts = [EVENT_ID_VERSION, event_name.strip(), subject, _clean_uri(no_show_uri) or ""]
    data = "calendly-brevo/event-id" + json.dumps(parts, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def fallback_key(env: Envelope) -> str:
    """Identity of an event without an invitee URI (documented in the module docstring)."""
    uri = loose_str(env.payload.get("uri"))
    if env.event == ROUTING_FORM_SUBMITTED and uri:
        return str(uri)
    if uri:
        stamp = next(
            (
                str(v)
                for v in (
                    loose_str(env.payload.get(k))
                    for k in ("updated_at", "deleted_at", "created_at")
                )
                if v
            ),
            env.created_at or "",
        )
        return f"{uri}@{stamp}"
    body = json.dumps(env.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def invitee_email(payload: InviteePayload, event: str) -> str:
    if payload.email is None or not payload.email.strip():
        raise UnmappableEvent(f"{event}: invitee has no email", code="no_email")
    email = normalize_email(payload.email)
    if email is None:
        # The address itself stays out of the message: errors end up in logs.
        raise UnmappableEvent(f"{event}: invitee email is not a valid address", code="bad_email")
    return email


def invitee_uri(payload: InviteePayload, event: str) -> str:
    uri = _clean_uri(payload.uri)
    if uri is None:
        raise UnmappableEvent(f"{event}: invitee payload has no 'uri'", code="no_invitee_uri")
    return uri


def read_event(env: Envelope) -> WebhookEvent:
    """The one parse of an envelope's payload: who the event is about (its id) and the payload
    typed for its kind. Raises :class:`UnmappableEvent` only for handled events."""
    if env.event in INVITEE_EVENTS:
        payload = invitee_payload(env)
        uri = invitee_uri(payload, env.event)
        email = invitee_email(payload, env.event)
        no_show: str | None = None
        if env.event in (NO_SHOW_CREATED, NO_SHOW_DELETED) and payload.no_show is not None:
            no_show = _clean_uri(payload.no_show.uri)
        identity = EventIdentity(event_id(env.event, uri, no_show), env.event, uri, email, no_show)
        return WebhookEvent(env, identity, invitee=payload)
    fallback = event_id(env.event, None, fallback=fallback_key(env))
    if env.event == ROUTING_FORM_SUBMITTED:
        submission = routing_payload(env)
        identity = EventIdentity(fallback, env.event, None, routing_email(submission))
        return WebhookEvent(env, identity, submission=submission)
    return WebhookEvent(env, EventIdentity(fallback, env.event, None, None))


def event_from_dict(data: Any) -> WebhookEvent:
    """:func:`read_event` of an already decoded body (previews, tests)."""
    return read_event(envelope_from_dict(data))


_EMAIL_QUESTION = re.compile(r"e-?mail", re.IGNORECASE)


def routing_email(submission: RoutingFormSubmission) -> str | None:
    """The submitter's email: the first valid answer to a question that mentions e-mail,
    else the first answer that is a valid address, else ``None``."""
    answers = [(qa.question or "", qa.answer or "") for qa in submission.questions_and_answers]
    for question, answer in answers:
        if _EMAIL_QUESTION.search(question) and (email := normalize_email(answer)):
            return email
    for _, answer in answers:
        if email := normalize_email(answer):
            return email
    return None
