"""Parse ``30d`` / ``48h`` / ``15m`` / ``90s`` and ISO dates for CLI options."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30d, 48h, 15m or 90s")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A duration ago (``24h``) or an ISO date/time (``2024-01-01``), as aware UTC."""
    now = now or datetime.now(UTC)
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither a duration (48h) nor a date (2024-01-01)") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Duration(click.ParamType[timedelta]):
    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class When(click.ParamType[datetime]):
    name = "when"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
