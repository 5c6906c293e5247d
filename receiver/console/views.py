"""The console's pages. Each handler decodes the request, calls a plain function of the core in
a thread (the store is blocking), and renders a template; nothing here holds business rules."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp_jinja2
import httpx
from aiohttp import web

from calendly_brevo.config import Settings
from calendly_brevo.errors import ConnectorError
from calendly_brevo.logs import get_logger
from receiver.console.auth import COOKIE, SESSION_SECONDS, new_session, token_matches
from receiver.console.guard import limiter
from receiver.console.keys import ADMIN_TOKEN, SERVICES, SESSION, SETTINGS

log = get_logger("calendly_brevo.console")
NAV = (("overview", "Overview"), ("contacts", "Contacts"), ("dead_letters", "Dead letters"))


def _url(request: web.Request, name: str, **parts: str) -> str:
    return str(request.app.router[name].url_for(**parts))


def _page(request: web.Request, **context: Any) -> dict[str, Any]:
    """What every template gets: links, the CSRF token of this session, the dry-run flag."""
    session = request.get(SESSION)
    token = request.app[ADMIN_TOKEN]
    names = ("overview", "contacts", "dead_letters", "webhooks", "logout", "login")
    return {
        "links": {name: _url(request, name) for name in names},
        "nav": (*NAV, ("webhooks", "Webhook")),
        "current": request.match_info.route.name,
        "csrf": session.csrf(token) if session is not None else "",
        "dry_run": request.app[SETTINGS].dry_run,
        "stylesheet": _url(request, "static", filename="console.css"),
        **context,
    }


# --- login --------------------------------------------------------------------------------------
def _next(request: web.Request, value: str | None) -> str:
    """Only a path inside the console (no open redirect)."""
    home = _url(request, "overview")
    return value if value and value.startswith(home) and "//" not in value else home


async def login_form(request: web.Request) -> web.Response:
    context = _page(request, next=_next(request, request.query.get("next")), error=None)
    return aiohttp_jinja2.render_template("login.html", request, context)


async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    address = request.remote or "unknown"
    guard = limiter(request)
    target = _next(request, str(form.get("next", "")))
    if (wait := guard.retry_after(address)) is not None:
        context = _page(request, next=target, error="Too many failed attempts: wait and retry.")
        response = aiohttp_jinja2.render_template("login.html", request, context, status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    token = request.app[ADMIN_TOKEN]
    if not token_matches(token, str(form.get("token", ""))):
        guard.failed(address)
        log.warning("console_login_refused", client=address)
        context = _page(request, next=target, error="That is not the admin token.")
        return aiohttp_jinja2.render_template("login.html", request, context, status=401)
    _session, cookie = new_session(token)
    log.info("console_login", client=address)
    response = web.HTTPSeeOther(target)
    secure = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        path=_url(request, "overview"),
        httponly=True,
        samesite="Strict",
        secure=secure,
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther(_url(request, "login"))
    response.del_cookie(COOKIE, path=_url(request, "overview"))
    raise response


# --- overview -----------------------------------------------------------------------------------
@aiohttp_jinja2.template("overview.html")
async def overview(request: web.Request) -> dict[str, Any]:
    from calendly_brevo.status import status_report

    settings, services = request.app[SETTINGS], request.app[SERVICES]
    report = await asyncio.to_thread(status_report, settings, services)
    return _page(request, report=report)


# --- contacts -----------------------------------------------------------------------------------
@aiohttp_jinja2.template("contact.html")
async def contacts(request: web.Request) -> dict[str, Any]:
    from calendly_brevo.trace import trace

    q = request.query
    email, event_id, invitee_uri = (
        q.get(k, "").strip() or None for k in ("email", "event_id", "invitee_uri")
    )
    found = None
    if email or event_id or invitee_uri:
        settings, services = request.app[SETTINGS], request.app[SERVICES]
        found = await asyncio.to_thread(
            trace,
            services.sessions,
            settings.rules,
            email=email,
            event_id=event_id,
            invitee_uri=invitee_uri,
            last_pushed=services.ledger.last_pushed,
        )
    return _page(request, query=email or event_id or invitee_uri or "", trace=found)


# --- dead letters -------------------------------------------------------------------------------
@aiohttp_jinja2.template("dead_letters.html")
async def dead_letters(request: web.Request) -> dict[str, Any]:
    from calendly_brevo.ledger import DeadLetterFilter

    include = request.query.get("all") == "1"
    ledger = request.app[SERVICES].ledger
    rows = await asyncio.to_thread(
        ledger.dead_letters, DeadLetterFilter(include_replayed=include), 200
    )
    return _page(request, rows=rows, include_replayed=include)


async def _dead_letter_or_404(request: web.Request) -> Any:
    ledger = request.app[SERVICES].ledger
    row = await asyncio.to_thread(ledger.dead_letter_by_id, int(request.match_info["id"]))
    if row is None:
        raise web.HTTPNotFound(text=f"no dead letter {request.match_info['id']}")
    return row


def _pretty(payload: str | None) -> str:
    if not payload:
        return "(pruned: past storage.payload_retention_days)"
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload


@aiohttp_jinja2.template("dead_letter.html")
async def dead_letter(request: web.Request) -> dict[str, Any]:
    row = await _dead_letter_or_404(request)
    return _page(
        request,
        row=row,
        payload=_pretty(row.payload),
        replayed=request.query.get("replayed") == "1",
        replay_url=_url(request, "replay", id=str(row.id)),
    )


@aiohttp_jinja2.template("confirm_replay.html")
async def replay_confirm(request: web.Request) -> dict[str, Any]:
    row = await _dead_letter_or_404(request)
    return _page(request, row=row, replay_url=_url(request, "replay", id=str(row.id)))


async def replay_submit(request: web.Request) -> web.Response:
    from calendly_brevo.ledger import DeadLetterFilter
    from calendly_brevo.replay import replay

    row = await _dead_letter_or_404(request)
    services = request.app[SERVICES]
    done = await asyncio.to_thread(
        replay, services.ledger, services.enqueuer, DeadLetterFilter(ids=(row.id,))
    )
    log.info("console_dead_letter_replayed", dead_letter=row.id, replayed=bool(done))
    target = request.app.router["dead_letter"].url_for(id=str(row.id))
    raise web.HTTPSeeOther(target.with_query(replayed="1" if done else "0"))


# --- webhook subscription -----------------------------------------------------------------------
def _check_subscription(settings: Settings, services: Any, repair: bool) -> dict[str, Any]:
    from calendly_brevo.calendly import make_client
    from calendly_brevo.calendly.subscriptions import default_callback_url, manager_for

    injected = getattr(services, "http_client", None)
    http = injected or httpx.Client(timeout=15.0)
    try:
        client = make_client(settings, http, services.sessions)
        manager = manager_for(settings, client, services.sessions)
        health = manager.check(default_callback_url(settings.server.public_url), repair=repair)
    except ConnectorError as exc:
        return {"healthy": False, "state": "unknown", "message": str(exc), "url": None}
    finally:
        if injected is None:
            http.close()
    return {
        "healthy": health.healthy,
        "state": health.state,
        "message": health.message,
        "url": health.url,
        # A key a repair generated is stored encrypted; the console never shows it.
        "new_key_stored": bool(health.signing_key),
    }


@aiohttp_jinja2.template("webhooks.html")
async def webhooks(request: web.Request) -> dict[str, Any]:
    from calendly_brevo.calendly.subscription_store import remembered

    services = request.app[SERVICES]
    try:
        stored = await asyncio.to_thread(remembered, services.sessions)
    except ConnectorError as exc:
        stored = {"error": str(exc)}
    return _page(request, stored=stored, result=None)


async def webhooks_check(request: web.Request) -> web.Response:
    from calendly_brevo.calendly.subscription_store import remembered

    form = await request.post()
    repair = form.get("repair") == "1"
    settings, services = request.app[SETTINGS], request.app[SERVICES]
    result = await asyncio.to_thread(_check_subscription, settings, services, repair)
    log.info("console_webhook_check", repair=repair, healthy=result["healthy"])
    stored = await asyncio.to_thread(remembered, services.sessions)
    context = _page(request, stored=stored, result=result)
    return aiohttp_jinja2.render_template("webhooks.html", request, context)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", overview, name="overview")
    login = r.add_resource("/login", name="login")
    login.add_route("GET", login_form)
    login.add_route("POST", login_submit)
    r.add_post("/logout", logout, name="logout")
    r.add_get("/contacts", contacts, name="contacts")
    r.add_get("/dead-letters", dead_letters, name="dead_letters")
    r.add_get(r"/dead-letters/{id:\d+}", dead_letter, name="dead_letter")
    replay = r.add_resource(r"/dead-letters/{id:\d+}/replay", name="replay")
    replay.add_route("GET", replay_confirm)
    replay.add_route("POST", replay_submit)
    r.add_get("/webhooks", webhooks, name="webhooks")
    r.add_post("/webhooks/check", webhooks_check, name="webhooks_check")
