"""The one duration and date grammar of every CLI option and config value that takes one.

A duration is a number and a unit, ``90s``, ``15m``, ``48h``, ``30d``, ``2w`` (case-insensitive,
``1.5h`` allowed). A point in time is a duration ago (``24h``) or an ISO 8601 date or time
(``2024-01-01``, ``2024-01-01T09:00:00Z``; no zone means UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from calendly_brevo.times import parse_iso

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30d, 48h, 15m or 90s")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_date(text: str) -> datetime:
    """An ISO 8601 date or time, as aware UTC (no zone means UTC)."""
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date like 2024-01-01 or 2024-01-01T09:00Z") from exc


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A duration ago (``24h``) or an ISO date/time (``2024-01-01``), as aware UTC."""
    now = now or datetime.now(UTC)
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_date(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither a duration (48h) nor a date (2024-01-01)") from exc


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
