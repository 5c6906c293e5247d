"""The one ISO 8601 parser: Calendly's and Brevo's timestamps, stored cursors, CLI dates.

:func:`parse_time` is lenient (payloads: ``None`` for missing or unparseable), :func:`parse_iso`
strict (cursors and options: raises ``ValueError``). Both accept ``Z`` or an offset and return
aware UTC; a time without a zone is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_iso(text: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_time(value: str | None) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 timestamp, or ``None``."""
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None
