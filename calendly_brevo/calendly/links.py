"""Single-use scheduling links, optionally written into a Brevo contact attribute.

``POST /scheduling_links`` with ``owner`` = an event type URI, ``owner_type: EventType`` and
``max_event_count`` (Calendly accepts only 1 today). With emails, each address gets its own link
and the link is upserted into the contact (``CALENDLY_BOOKING_LINK`` by default), so a Brevo
campaign or automation can send a personal booking link
(``{{ contact.CALENDLY_BOOKING_LINK }}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.config import Settings
from calendly_brevo.errors import CalendlyNotFound, ConfigError

DEFAULT_ATTRIBUTE = "CALENDLY_BOOKING_LINK"


class ContactWriter(Protocol):
    """What we need from :class:`calendly_brevo.brevo.client.BrevoClient`."""

    def upsert_contact(
        self, email: str, attributes: dict[str, Any], list_ids: Sequence[int] = ()
    ) -> Any: ...


@dataclass(frozen=True)
class LinkResult:
    booking_url: str
    email: str | None = None
    #: True when the link was written into the Brevo contact.
    written: bool = False


def resolve_event_type(client: CalendlyClient, settings: Settings, ref: str) -> str:
    """An event type URI from a URI, an ``event_mapping`` key, a slug or a name."""
    if ref.startswith(("https://", "http://")):
        return ref
    entry = settings.calendly.event_mapping.get(ref)
    if entry is not None and entry.event_type_uri:
        return entry.event_type_uri
    me = client.me()
    found: list[dict[str, Any]] = []
    for params in ({"user": me["uri"]}, {"organization": me.get("current_organization")}):
        found = list(client.list_event_types(**params))
        wanted = ref.casefold()
        matches = [
            et
            for et in found
            if wanted in (str(et.get("slug", "")).casefold(), str(et.get("name", "")).casefold())
        ]
        uris = list(dict.fromkeys(str(et["uri"]) for et in matches))
        if len(uris) == 1:
            return uris[0]
        if len(uris) > 1:
            raise ConfigError(
                "--event-type", f"{ref!r} matches {len(uris)} event types", "pass the URI"
            )
    known = ", ".join(sorted({str(et.get("slug")) for et in found})) or "none visible"
    raise CalendlyNotFound(f"no event type with slug or name {ref!r} (slugs: {known})")


def create_links(
    client: CalendlyClient,
    event_type_uri: str,
    *,
    emails: Sequence[str] = (),
    max_uses: int = 1,
    brevo: ContactWriter | None = None,
    attribute: str = DEFAULT_ATTRIBUTE,
) -> list[LinkResult]:
    """One link (no emails) or one link per email, written to Brevo when ``brevo`` is given."""
    if not emails:
        link = client.create_scheduling_link(event_type_uri, max_event_count=max_uses)
        return [LinkResult(str(link["booking_url"]))]
    results: list[LinkResult] = []
    for email in dict.fromkeys(e.strip() for e in emails if e.strip()):
        link = client.create_scheduling_link(event_type_uri, max_event_count=max_uses)
        url = str(link["booking_url"])
        if brevo is not None:
            brevo.upsert_contact(email, {attribute: url})
        results.append(LinkResult(url, email, written=brevo is not None))
    return results


def read_emails(text: str) -> list[str]:
    """Emails from a file: one per line, or CSV whose first column is the email; # comments."""
    emails = []
    for line in text.splitlines():
        value = line.split("#", 1)[0].split(",", 1)[0].strip().strip('"')
        if "@" in value:
            emails.append(value)
    return emails
