"""Plain records kept by the fake Brevo: contacts, attributes, events, requests, violations.

Every record has ``to_json()`` so the control API and ``FakeBrevo.snapshot()`` can hand out
copies that tests (or other processes) may read without racing the server loop.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

Family = Literal["contacts", "events", "other"]
FAMILIES: tuple[Family, ...] = ("contacts", "events", "other")


def family_of(method: str, path: str) -> Family:
    """Brevo's rate-limit family of a request path (with or without the /v3 prefix)."""
    relative = path.removeprefix("/v3")
    if relative == "/contacts" or relative.startswith("/contacts/"):
        return "contacts"
    if method.upper() == "POST" and relative in ("/events", "/events/batch"):
        return "events"
    return "other"


@dataclass
class Contact:
    """A Brevo contact. Attribute names are snake_case; ``to_json()`` gives Brevo's shape."""

    id: int
    email: str
    attributes: dict[str, Any]
    list_ids: set[int]
    created_at: str
    modified_at: str
    ext_id: str | None = None
    email_blacklisted: bool = False
    sms_blacklisted: bool = False

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /contacts/{identifier}``."""
        attributes = dict(self.attributes)
        if self.ext_id is not None:
            attributes["EXT_ID"] = self.ext_id
        return {
            "email": self.email,
            "id": self.id,
            "emailBlacklisted": self.email_blacklisted,
            "smsBlacklisted": self.sms_blacklisted,
            "createdAt": self.created_at,
            "modifiedAt": self.modified_at,
            "attributes": attributes,
            "listIds": sorted(self.list_ids),
            "listUnsubscribed": [],
            "statistics": {},
        }


AttributeType = Literal[
    "text", "date", "float", "boolean", "id", "category", "multiple-choice", "user"
]


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = "text"
    category: str = "normal"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "type": self.type}


DEFAULT_ATTRIBUTES = (Attribute("FIRSTNAME"), Attribute("LASTNAME"), Attribute("SMS"))


@dataclass(frozen=True)
class EventRecord:
    """A ``POST /events`` that was accepted (204)."""

    event_name: str
    identifiers: dict[str, Any]
    event_properties: dict[str, Any]
    contact_properties: dict[str, Any]
    event_date: str | None
    received_at: str
    received_monotonic: float
    request_seq: int
    contact_id: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RequestRecord:
    """One request to ``/v3``, whatever its outcome."""

    seq: int
    method: str
    path: str
    family: Family
    status: int
    at: float  # time.monotonic() when the answer was decided
    fault: str | None = None
    effect_applied: bool = False
    violation: bool = False
    body: Any = None
    #: time.monotonic() when the fake had read the request (before validation and the handler).
    arrived: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Violation:
    """A request that does not match the spec (or a fake response that does not)."""

    seq: int
    method: str
    path: str
    errors: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "errors": list(self.errors)}


@dataclass(frozen=True)
class IgnoredAttribute:
    """An attribute Brevo would silently drop: not defined in the account, or wrong type."""

    seq: int
    email: str
    name: str
    value: Any
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most requests in any half-open interval ``[t, t + window)`` (sliding, not aligned)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def over_limit(snap: dict[str, Any]) -> str:
    """For a failed 429 count: each 429 the fake's limit gave, with the arrivals of its family's
    requests within a second either side (ms relative to it) and the load average."""
    limited = [r for r in snap["requests"] if r["status"] == 429 and not r.get("fault")]
    lines = [f"load average {os.getloadavg()}"]
    for r in limited:
        near = sorted(
            round((o["arrived"] - r["arrived"]) * 1000)
            for o in snap["requests"]
            if o["family"] == r["family"] and abs(o["arrived"] - r["arrived"]) <= 1.0
        )
        lines.append(f"429 on {r['method']} {r['path']}: neighbours at {near} ms")
    return "\n".join(lines)
