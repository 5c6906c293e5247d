"""The infrastructure checks: Redis, dead workers' messages, the database, stale contacts."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from calendly_brevo.doctor.base import Check, DoctorContext
from calendly_brevo.errors import ConnectorError, ServiceUnavailable


def check_redis(ctx: DoctorContext) -> Check:
    name = "Redis"
    if not ctx.settings.storage.redis_url:
        return Check(name, "OK", "not configured: embedded SQLite queue")
    try:
        ok = ctx.redis_ping() if ctx.redis_ping else False
    except Exception as exc:
        ok = False
        ctx._cache["redis_error"] = type(exc).__name__
    if ok:
        return Check(name, "OK", "reachable")
    return Check(
        name,
        "FAIL",
        f"not reachable ({ctx._cache.get('redis_error', 'no answer')})",
        "check REDIS_URL and that Redis runs (with AOF on)",
    )


def check_dead_workers(ctx: DoctorContext) -> Check:
    """Messages held by workers whose heartbeat is stale: fine for one maintenance interval,
    a FAIL (no maintenance anywhere) past it."""
    name = "messages held by dead workers"
    if not ctx.settings.storage.redis_url:
        return Check(name, "OK", "embedded: `run` releases what it held when it starts")
    if ctx.redis_client is None or ctx._cache.get("redis_error"):
        return Check(name, "WARN", "not checked (Redis not reachable)")
    from calendly_brevo.queue_health import describe_stale, stale_holders

    timeout_ms = int(ctx.settings.worker.heartbeat_timeout_seconds * 1000)
    try:
        holders = stale_holders(ctx.redis_client(), heartbeat_timeout_ms=timeout_ms)
    except Exception as exc:  # a check reports, never raises
        return Check(name, "WARN", f"not checked ({type(exc).__name__})")
    detail, fix = describe_stale(holders, ctx.settings)
    if fix:
        return Check(name, "FAIL", detail, fix)
    return Check(name, "WARN" if holders.messages else "OK", detail)


def check_database(ctx: DoctorContext) -> Check:
    from calendly_brevo.db.migrate import is_current

    name = "database"
    try:
        engine = ctx.engine_factory()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = is_current(engine)
    except ServiceUnavailable as exc:  # the embedded store does not exist yet
        return Check(name, "FAIL", str(exc), exc.fix)
    except SQLAlchemyError as exc:
        return Check(name, "FAIL", f"not reachable: {type(exc).__name__}", "check DATABASE_URL")
    if not current:
        return Check(
            name, "FAIL", "schema is not at the newest migration", "run `calendly-brevo migrate`"
        )
    return Check(name, "OK", f"reachable and migrated ({engine.url.get_backend_name()})")


def check_stale_contacts(ctx: DoctorContext) -> Check:
    """Contacts pushed under an earlier mapping than today's (issue: a config change)."""
    from calendly_brevo.ledger import open_ledger
    from calendly_brevo.status import stale_contacts

    name = "stale contacts"
    try:
        n = stale_contacts(ctx.settings.rules, open_ledger(ctx.engine_factory()))
    except (SQLAlchemyError, ConnectorError) as exc:
        return Check(name, "WARN", f"not checked: {type(exc).__name__}")
    if n:
        return Check(
            name,
            "WARN",
            f"{n} contact(s) were last pushed under an earlier mapping than the current config",
            "run `calendly-brevo resync` (it pushes only the differences, never custom events)",
        )
    return Check(name, "OK", "every pushed contact matches the current mapping")
