"""What ``calendly-brevo status`` and the console's overview show, as one plain dict.

Each part (queue, database, rate limiter) is read on its own and reports what it can: an
unreachable part is ``{"ok": False, "error": <one line>, "fix": <one sentence>}`` (see
:mod:`calendly_brevo.unreachable`), never a driver's multi-line dump. ``healthy`` is false when
any part cannot be read. The embedded queue that ``run`` has not created yet is empty, not
unhealthy; the embedded rate-limit bucket lives in the running process and is not readable here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.config import Rules, Settings
from calendly_brevo.errors import ServiceUnavailable
from calendly_brevo.unreachable import describe

#: Throughput is counted over this window (events applied per minute).
THROUGHPUT_WINDOW = timedelta(minutes=15)


class StatusSources(Protocol):
    """The parts of :class:`calendly_brevo.bootstrap.Services` a report reads."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def enqueuer(self) -> Any: ...

    @property
    def redis(self) -> Any: ...

    @property
    def ledger(self) -> Any: ...


def _problem(exc: Exception, settings: Settings) -> dict[str, Any]:
    found = exc if isinstance(exc, ServiceUnavailable) else describe(exc, settings)
    if found is None:
        lines = str(exc).strip().splitlines() or [""]
        return {"ok": False, "error": f"{type(exc).__name__}: {lines[0]}"}
    return {"ok": False, "error": str(found), "fix": found.fix}


def applied_per_minute(sessions: sessionmaker[Session], now: datetime | None = None) -> float:
    """Events applied per minute over the last :data:`THROUGHPUT_WINDOW`."""
    from calendly_brevo.db.models import ProcessedEvent

    since = (now or datetime.now(UTC)) - THROUGHPUT_WINDOW
    with sessions() as s:
        n = s.scalar(
            select(func.count())
            .select_from(ProcessedEvent)
            .where(ProcessedEvent.status == "applied", ProcessedEvent.applied_at >= since)
        )
    return round(int(n or 0) / (THROUGHPUT_WINDOW.total_seconds() / 60), 2)


def stale_contacts(rules: Rules, ledger: Any) -> int:
    """Contacts last pushed under another mapping than today's (``resync`` updates them)."""
    from calendly_brevo.pushed import mapping_fingerprint

    return int(ledger.stale_pushed(mapping_fingerprint(rules)))


def _database_part(settings: Settings, sources: StatusSources) -> dict[str, Any]:
    from calendly_brevo.lifecycle import status_numbers

    sessions = sources.sessions
    n = status_numbers(sessions)
    last = n["last_applied_at"]
    return {
        "ok": True,
        "last_event": n["last_event"],
        "last_applied_at": last.isoformat() if last else None,
        "last_lag_seconds": n["last_lag_seconds"],
        "applied_per_minute": applied_per_minute(sessions),
        "events_by_status": dict(sorted(n["events_by_status"].items())),
        "suppressed_by_reason": dict(sorted(n["suppressed_by_reason"].items())),
        "dead_letters_open": n["dead_letters_open"],
        "subscription": n["subscription"],
        "stale_contacts": stale_contacts(settings.rules, sources.ledger),
    }


def _buckets(settings: Settings, sources: StatusSources) -> dict[str, Any] | None:
    if not settings.storage.redis_url:
        return None
    from calendly_brevo.ratelimit import make_token_bucket

    state: dict[str, Any] = make_token_bucket(settings.brevo, sources.redis).state()
    return state


def _held_part(settings: Settings, sources: StatusSources) -> dict[str, Any]:
    """Messages held by dead workers (Redis), or taken by a ``run`` (SQLite); not ``ok`` once
    they wait past the recovery bound, which means no queue maintenance runs anywhere."""
    if not settings.storage.redis_url:
        from calendly_brevo.queueing import QUEUE_NAME

        try:
            queue = sources.enqueuer.queue
        except ServiceUnavailable:  # no queue yet: nothing can be held
            return {"ok": True, "messages": 0, "detail": "none"}
        taken = int(queue.count(QUEUE_NAME, "taken")) + int(
            queue.count(f"{QUEUE_NAME}.DQ", "taken")
        )
        detail = f"{taken} taken by `run` (if it died, released when it starts again)"
        return {"ok": True, "messages": taken, "detail": detail}
    from calendly_brevo.queue_health import describe_stale, stale_holders

    timeout_ms = int(settings.worker.heartbeat_timeout_seconds * 1000)
    holders = stale_holders(sources.redis, heartbeat_timeout_ms=timeout_ms)
    detail, fix = describe_stale(holders, settings)
    part: dict[str, Any] = {"ok": fix is None, "messages": holders.messages, "detail": detail}
    if fix:
        part["fix"] = fix
    return part


def status_report(settings: Settings, sources: StatusSources) -> dict[str, Any]:
    """Every part, read independently (see the module docstring)."""
    parts: dict[str, Any] = {}
    try:
        parts["queue"] = {"ok": True, **sources.enqueuer.depth()}
    except ServiceUnavailable as exc:
        parts["queue"] = {"ok": True, "ready": 0, "delayed": 0, "dead": 0, "note": str(exc)}
    except Exception as exc:  # a status report shows every part it can reach
        parts["queue"] = _problem(exc, settings)
    try:
        parts["held_by_dead_workers"] = _held_part(settings, sources)
    except Exception as exc:
        parts["held_by_dead_workers"] = _problem(exc, settings)
    try:
        parts["database"] = _database_part(settings, sources)
    except Exception as exc:
        parts["database"] = _problem(exc, settings)
    try:
        parts["rate_limiter"] = {"ok": True, "buckets": _buckets(settings, sources)}
    except Exception as exc:
        parts["rate_limiter"] = _problem(exc, settings)
    return {
        "healthy": all(part["ok"] for part in parts.values()),
        "mode": "embedded" if settings.embedded else "redis + database",
        "brevo": {"dry_run": settings.dry_run, "api_url": settings.brevo.api_url},
        **parts,
    }
