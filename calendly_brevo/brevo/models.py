"""Plain data the Brevo client returns or reads: results, rate-limit headers, error bodies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

AttributeCategory = Literal["normal", "transactional", "category", "calculated", "global"]
AttributeType = Literal[
    "text", "date", "float", "boolean", "id", "category", "multiple-choice", "user"
]
IdentifierType = Literal[
    "email_id", "contact_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id"
]

#: Longest pause or retry delay taken from ``x-sib-ratelimit-reset`` (its unit is only
#: "typically seconds"; one third party reads it as milliseconds). A longer window (the
#: 100-per-hour family) is then re-learnt from the next 429, one request a minute at most.
MAX_RESET_SECONDS = 60.0


@dataclass(frozen=True)
class UpsertResult:
    """``created``: Brevo answered 201 (new contact, ``contact_id`` known) rather than 204."""

    created: bool
    contact_id: int | None


@dataclass(frozen=True)
class ListChange:
    """Emails Brevo added to (or removed from) a list, and those it reported as failures
    (already in or out of the list, or not a contact)."""

    success: list[str] = field(default_factory=list)
    failure: list[str] = field(default_factory=list)


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class RateLimitHeaders:
    """``x-sib-ratelimit-*`` of one response; ``None`` where absent or unreadable.

    ``reset`` is in seconds, made safe: a value over an hour is taken to be milliseconds
    (no documented window is longer than an hour), then clamped to ``[0, MAX_RESET_SECONDS]``.
    """

    limit: int | None
    remaining: int | None
    reset: float | None

    @classmethod
    def parse(cls, headers: httpx.Headers) -> RateLimitHeaders:
        limit = _number(headers.get("x-sib-ratelimit-limit"))
        remaining = _number(headers.get("x-sib-ratelimit-remaining"))
        reset = _number(headers.get("x-sib-ratelimit-reset"))
        if reset is not None:
            if reset > 3600:
                reset /= 1000
            reset = min(max(reset, 0.0), MAX_RESET_SECONDS)
        return cls(
            limit=None if limit is None else max(0, int(limit)),
            remaining=None if remaining is None else max(0, int(remaining)),
            reset=reset,
        )


@dataclass(frozen=True)
class BrevoErrorBody:
    """Brevo's error model ``{code, message, metadata?}``; empty strings when absent."""

    code: str
    message: str
    metadata: Mapping[str, Any]

    @classmethod
    def parse(cls, response: httpx.Response) -> BrevoErrorBody:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls("", response.text[:200], {})
        metadata = data.get("metadata")
        return cls(
            code=str(data.get("code") or ""),
            message=str(data.get("message") or ""),
            metadata=metadata if isinstance(metadata, dict) else {},
        )

    @property
    def duplicate_identifiers(self) -> list[str]:
        ids = self.metadata.get("duplicate_identifiers")
        return [str(i) for i in ids] if isinstance(ids, list) else []

    def is_sms_conflict(self) -> bool:
        """The SMS number already belongs to another contact (Brevo's #1 upsert failure)."""
        if "SMS" in (i.upper() for i in self.duplicate_identifiers):
            return True
        mentions_sms = "SMS" in self.message.upper().replace(",", " ").split()
        if self.code == "duplicate_parameter":
            return mentions_sms
        # Updates report the same conflict as invalid_parameter.
        return self.code == "invalid_parameter" and mentions_sms and "already" in self.message
