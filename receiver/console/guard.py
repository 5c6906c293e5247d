"""Who may see the console, and the headers every console answer carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from calendly_brevo.logs import get_logger
from receiver.auth_limit import AUTH_LIMITER, AuthLimiter, limiter_for
from receiver.console.auth import COOKIE, csrf_ok, read_session, token_matches
from receiver.console.keys import ADMIN_TOKEN, CSRF_FIELD, SESSION

log = get_logger("calendly_brevo.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Resources anyone may fetch: the login form and the stylesheet.
OPEN_RESOURCES = frozenset({"login", "static"})

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def limiter(request: web.Request) -> AuthLimiter:
    """The admin API's failed-authentication limiter, from the app the console is mounted on:
    one admin token, one budget of guesses per address (10 per 5 minutes), whichever door."""
    shared = request.config_dict.get(AUTH_LIMITER)
    return shared if shared is not None else limiter_for(request.app)


def _is_open(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.name in OPEN_RESOURCES


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[ADMIN_TOKEN]
    if not token:
        raise web.HTTPNotFound(text="console disabled: set CONNECTOR_ADMIN_TOKEN to enable it")
    if _is_open(request):
        return await handler(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        address = request.remote or "unknown"
        wait = limiter(request).retry_after(address)
        if wait is not None:
            raise web.HTTPTooManyRequests(
                text="too many failed attempts", headers={"Retry-After": str(int(wait) + 1)}
            )
        if not token_matches(token, given):
            limiter(request).failed(address)
            raise web.HTTPUnauthorized(text="wrong admin token")
        request[SESSION] = None  # a script: no cookie, so no CSRF to check
        return await handler(request)
    session = read_session(token, request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET":
            login = request.app.router["login"].url_for().with_query(next=request.path_qs)
            raise web.HTTPSeeOther(login)
        raise web.HTTPUnauthorized(text="log in first")
    if request.method == "POST":
        form = await request.post()
        if not csrf_ok(token, session, str(form.get(CSRF_FIELD, ""))):
            log.warning("console_csrf_refused", path=request.path)
            raise web.HTTPForbidden(text="stale or missing form token: reload the page")
    request[SESSION] = session
    return await handler(request)
