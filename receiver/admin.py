"""A tiny admin API: ``POST /admin/scheduling-links`` and ``GET /admin/status``.

Behind ``Authorization: Bearer <security.admin_token>`` (``CONNECTOR_ADMIN_TOKEN``), compared in
constant time. With no admin token configured the admin API does not exist (404), so a
receiver exposed to the internet has nothing to guess at.

``POST /admin/scheduling-links`` with ``{"event_type": <uri|mapping key|slug|name>,
"email": <optional>}`` creates a single-use link; with an email it is also written to the Brevo
contact (``CALENDLY_BOOKING_LINK``, or ``"attribute"``). It calls Calendly and Brevo, so it
belongs on the admin side of the receiver, never on the webhook path.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import httpx
from aiohttp import web

from calendly_brevo.config import Settings
from calendly_brevo.errors import ConfigError, ConnectorError, PermanentError
from calendly_brevo.logs import get_logger
from receiver.auth_limit import AUTH_LIMITER, limiter_for, too_many

log = get_logger("calendly_brevo.receiver.admin")

#: Why a link asked for with an email was not written to Brevo: this receiver has no Brevo key
#: (the Kubernetes manifests give it to the worker only, issue 13 point 11) or runs dry.
NOT_WRITTEN = (
    "not written to Brevo: this receiver has no BREVO_API_KEY (or runs dry); write it with "
    "`calendly-brevo links create --email` where the Brevo key is, e.g. in a worker pod"
)


def _authorized(settings: Settings, request: web.Request) -> bool | None:
    """None: admin API disabled; else whether the bearer token matches."""
    token = settings.security.admin_token
    expected = token.get_secret_value() if token else ""
    if not expected:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _guard(settings: Settings, request: web.Request) -> web.Response | None:
    ok = _authorized(settings, request)
    address = request.remote or "unknown"
    limiter = request.app[AUTH_LIMITER]  # set by setup_admin / setup_oauth
    if ok is not None and (wait := limiter.retry_after(address)) is not None:
        log.warning("admin_auth_rate_limited", client=address)
        return too_many(wait)
    if ok is False:
        limiter.failed(address)
    if ok is None:
        return web.json_response(
            {"error": "admin API disabled: set CONNECTOR_ADMIN_TOKEN to enable it"}, status=404
        )
    if not ok:
        return web.json_response(
            {"error": "missing or wrong bearer token"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


def admin_guard(settings: Settings, request: web.Request) -> web.Response | None:
    """None when the request carries the admin token; else the 404/401/429 to answer."""
    return _guard(settings, request)


def _create_link(
    settings: Settings, services: Any, event_type: str, email: str | None, attribute: str
) -> dict[str, Any]:
    from calendly_brevo.brevo.client import client_for
    from calendly_brevo.calendly import make_client
    from calendly_brevo.calendly.links import create_links, resolve_event_type

    injected = getattr(services, "http_client", None)
    http = injected or httpx.Client(timeout=15.0)
    try:
        client = make_client(settings, http, services.sessions)
        uri = resolve_event_type(client, settings, event_type)
        brevo = client_for(services, settings) if email else None
        (result,) = create_links(
            client, uri, emails=[email] if email else [], brevo=brevo, attribute=attribute
        )
    finally:
        if injected is None:
            http.close()
    out: dict[str, Any] = {
        "booking_url": result.booking_url,
        "event_type": uri,
        "email": result.email,
        "attribute": attribute if result.written else None,
    }
    if email and not result.written:
        out["not_written"] = NOT_WRITTEN
    return out


def _link_request(body: Any) -> tuple[str, str | None, str] | str:
    """``(event_type, email, attribute)`` from a scheduling-links body, or what is wrong."""
    if not isinstance(body, dict):
        return "'event_type' is required"
    event_type, email = body.get("event_type"), body.get("email")
    if not isinstance(event_type, str) or not event_type:
        return "'event_type' is required"
    if email is not None and (not isinstance(email, str) or "@" not in email):
        return "'email' must be an address"
    return event_type, email, str(body.get("attribute", "CALENDLY_BOOKING_LINK"))


def _status_snapshot(settings: Settings, services: Any) -> dict[str, Any]:
    from calendly_brevo.calendly.backfill import BACKFILL_STATE, load_cursor
    from calendly_brevo.calendly.subscription_store import remembered

    out: dict[str, Any] = {"mode": "embedded" if settings.embedded else "redis"}
    try:
        out["queue"] = services.enqueuer.depth()
    except ConnectorError as exc:
        out["queue"] = {"error": str(exc)}
    try:
        out["webhook_subscription"] = remembered(services.sessions)
        cursor = load_cursor(services.sessions, BACKFILL_STATE)
        out["backfill"] = (
            {"done": cursor.done, "stats": cursor.stats} if cursor is not None else None
        )
    except Exception as exc:
        out["database"] = {"error": type(exc).__name__}
    return out


def setup_admin(app: web.Application, settings: Settings, services: Any) -> None:
    """Add the admin routes. ``services`` is a :class:`calendly_brevo.bootstrap.Services`
    (``brevo_client`` / ``http_client`` attributes, when set, are used instead of real ones)."""
    limiter_for(app)

    async def scheduling_links(request: web.Request) -> web.Response:
        if (denied := _guard(settings, request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        parsed = _link_request(body)
        if isinstance(parsed, str):
            return web.json_response({"error": parsed}, status=400)
        try:
            result = await asyncio.to_thread(_create_link, settings, services, *parsed)
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except PermanentError as exc:
            return web.json_response({"error": str(exc)}, status=502)
        except ConnectorError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(result, status=201)

    async def status(request: web.Request) -> web.Response:
        if (denied := _guard(settings, request)) is not None:
            return denied
        return web.json_response(await asyncio.to_thread(_status_snapshot, settings, services))

    app.router.add_post("/admin/scheduling-links", scheduling_links)
    app.router.add_get("/admin/status", status)
