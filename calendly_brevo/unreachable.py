"""Say in one line which service a command could not reach, and how to fix it.

The CLI calls :func:`describe` on an exception that escaped a command; a connection failure to
Postgres, SQLite, Redis, Brevo or Calendly becomes a :class:`ServiceUnavailable` (printed as
``error: …`` and ``fix: …``, exit 1) instead of a driver's traceback. Anything else is left to
propagate: it is a bug, and its traceback is what a report needs. Passwords in URLs are hidden.
"""

from __future__ import annotations

import sqlite3

import httpx
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from calendly_brevo.config import Settings
from calendly_brevo.errors import ServiceUnavailable


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):
        return "(unparseable URL)"


def _database(exc: BaseException, settings: Settings | None) -> ServiceUnavailable:
    where = safe_url(settings.database_url) if settings else "the database"
    reason = _first_line(exc)
    if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
        return ServiceUnavailable(
            f"the database at {where} has no tables yet ({reason})",
            "run `calendly-brevo migrate`",
        )
    return ServiceUnavailable(
        f"cannot reach the database at {where}: {reason}",
        "start it, or check DATABASE_URL (storage.database_url) and the network",
    )


def _redis(exc: BaseException, settings: Settings | None) -> ServiceUnavailable:
    where = safe_url(settings.storage.redis_url or "") if settings else "Redis"
    return ServiceUnavailable(
        f"cannot reach Redis at {where}: {_first_line(exc)}",
        "start it, or check REDIS_URL (storage.redis_url) and the network",
    )


def _http(exc: httpx.HTTPError, settings: Settings | None) -> ServiceUnavailable:
    try:
        url = str(exc.request.url)
    except RuntimeError:
        url = ""
    reason = f"{type(exc).__name__}: {_first_line(exc)}"
    apis = (
        [
            (
                "Calendly",
                settings.calendly.api_url,
                "CALENDLY_API_URL (connectors.calendly.api_url)",
            ),
            ("Brevo", settings.brevo.api_url, "BREVO_API_URL (brevo.api_url)"),
        ]
        if settings is not None
        else []
    )
    for name, base, knob in apis:
        if url and url.startswith(base.rstrip("/")):
            return ServiceUnavailable(
                f"cannot reach {name} at {base}: {reason}", f"check {knob} and the network"
            )
    host = httpx.URL(url).host if url else "the API"
    return ServiceUnavailable(
        f"cannot reach {host}: {reason}",
        "check the network and the API URL (connectors.calendly.api_url, brevo.api_url)",
    )


def describe(exc: BaseException, settings: Settings | None) -> ServiceUnavailable | None:
    """The one-line form of ``exc`` (or of the error that caused it, e.g. the Redis error under
    a ``QueueUnavailable``) when it is a connection failure, else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _describe_one(current, settings)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _describe_one(exc: BaseException, settings: Settings | None) -> ServiceUnavailable | None:
    import redis

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sqlite3.OperationalError):
        return _database(exc, settings)
    if isinstance(exc, sa_exc.ProgrammingError) and "does not exist" in _first_line(exc):
        return _database(exc, settings)
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return _redis(exc, settings)
    if isinstance(exc, httpx.TransportError):
        return _http(exc, settings)
    return None
