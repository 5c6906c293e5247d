"""The seed's blocks, loaded verbatim: ``connectors.calendly.*`` (the switches, the event-type
filter, ``event_mapping``, the webhook and OAuth keys, the debug keys) and ``field_mapping``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from calendly_brevo.config.base import DEFAULT_CALENDLY_API_URL, Strict


class EventTypeFilter(Strict):
    """Which event types are pushed to Brevo (events of others are stored, not pushed). Each
    entry is an event type URI, slug or name, matched as ``event_mapping`` matches. Empty
    ``include``: every type; ``exclude`` wins over ``include``."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @field_validator("include", "exclude")
    @classmethod
    def _not_blank(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item.strip() for item in v):
            raise ValueError("entries are event type URIs, slugs or names, not blank")
        return tuple(item.strip() for item in v)


class SyncSwitches(Strict):
    contacts: bool = True
    events: bool = True
    cancellations: bool = True
    event_types: EventTypeFilter = EventTypeFilter()
    #: The worker resyncs stale contacts in the background on spare bucket capacity.
    auto_resync: bool = False


class EventMappingEntry(Strict):
    """One Calendly event type → Brevo list(s). Matched by URI, else slug, else name."""

    list_id: int | None = Field(default=None, gt=0)
    list_ids: tuple[int, ...] = ()
    event_type_uri: str | None = None
    slug: str | None = None
    name: str | None = None

    @field_validator("list_ids")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(i <= 0 for i in v):
            raise ValueError("list ids are positive integers")
        return v

    @property
    def lists(self) -> tuple[int, ...]:
        ids = ((self.list_id,) if self.list_id else ()) + self.list_ids
        return tuple(dict.fromkeys(ids))


class WebhookSettings(Strict):
    signing_key: SecretStr | None = None
    #: Older keys still accepted while a rotation is in progress.
    previous_signing_keys: tuple[SecretStr, ...] = ()
    tolerance_seconds: int = Field(default=180, ge=1, le=3600)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: A client that has not sent its whole body within this many seconds gets 408.
    read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @property
    def keys(self) -> tuple[str, ...]:
        keys = [self.signing_key] if self.signing_key else []
        keys += list(self.previous_signing_keys)
        return tuple(k.get_secret_value() for k in keys if k.get_secret_value())


class OAuthSettings(Strict):
    client_id: str | None = None
    client_secret: SecretStr | None = None
    redirect_uri: str | None = None
    auth_url: str = "https://auth.calendly.com"
    scopes: tuple[str, ...] = ()


class CalendlySettings(Strict):
    enabled: bool = True
    access_token: SecretStr | None = None
    api_url: str = DEFAULT_CALENDLY_API_URL
    organization_uri: str | None = None
    sync: SyncSwitches = SyncSwitches()
    event_mapping: dict[str, EventMappingEntry] = {}
    webhook: WebhookSettings = WebhookSettings()
    oauth: OAuthSettings = OAuthSettings()
    #: Seed debug block: ``debug: true`` logs PII; ``log_webhooks`` logs full payloads.
    debug: bool = False
    log_level: Literal["error", "warning", "info", "verbose", "debug"] = "info"
    log_webhooks: bool = False
    #: Also accept the field mapping nested here (the seed's indentation is ambiguous).
    field_mapping: FieldMapping | None = None


class FieldMapping(Strict):
    """Calendly invitee fields → Brevo attribute names (upper case)."""

    email: str = "email"
    name: str | None = "FIRSTNAME"
    first_name: str | None = None
    last_name: str | None = "LASTNAME"
    questions_and_answers: dict[str, str] = {}
    event_type_name: str | None = "CALENDLY_EVENT_TYPE"
    scheduled_at: str | None = "MEETING_DATE"
    status: str | None = "BOOKING_STATUS"
    timezone: str | None = None
    cancel_url: str | None = None
    reschedule_url: str | None = None
    #: UTM tracking: ``utm_source: UTM_SOURCE`` etc.
    tracking: dict[str, str] = {}
    #: Region for phone numbers given without a country code (ISO 3166 alpha-2, e.g. "NL").
    phone_default_region: str | None = None
    #: The number the invitee gave for SMS reminders (Calendly's ``text_reminder_number``), in
    #: E.164; a phone answer mapped to the same attribute wins. ``null`` to leave it out.
    text_reminder_number: str | None = "SMS"

    @field_validator("email")
    @classmethod
    def _email_is_the_identifier(cls, value: str) -> str:
        # The seed's `email: email`: Brevo identifies the contact by the invitee's email, the
        # one thing that is not remappable. Anything else would be accepted and ignored.
        if value.strip().lower() != "email":
            raise ValueError(
                f"{value!r} is not supported: the contact is always identified by the invitee's "
                "email (write `email: email` or remove the key)"
            )
        return "email"

    @model_validator(mode="after")
    def _attribute_names(self) -> FieldMapping:
        names: dict[str, str | None] = {
            k: getattr(self, k)
            for k in (
                "name",
                "first_name",
                "last_name",
                "event_type_name",
                "scheduled_at",
                "status",
                "timezone",
                "cancel_url",
                "reschedule_url",
                "text_reminder_number",
            )
        }
        names |= {f"questions_and_answers.{k}": v for k, v in self.questions_and_answers.items()}
        names |= {f"tracking.{k}": v for k, v in self.tracking.items()}
        for key, value in names.items():
            if value is not None and not re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
                raise ValueError(
                    f"{key}: Brevo attribute names are upper case letters, digits and _ "
                    f"(got {value!r}, try {re.sub(r'[^A-Z0-9_]', '_', value.upper())!r})"
                )
        return self


CalendlySettings.model_rebuild()


class Connectors(Strict):
    calendly: CalendlySettings = CalendlySettings()
