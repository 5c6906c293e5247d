"""``GET /oauth/calendly/start`` and ``/oauth/calendly/callback``: connect Calendly via OAuth.

The two routes live on different listeners: ``start`` on the admin port
(:func:`setup_oauth_start`), ``callback`` on the public one (:func:`setup_oauth_callback`), the
only OAuth path the internet reaches. The flow, in the operator's browser:

1. ``GET /oauth/calendly/start`` on the admin port, with the admin bearer token (``?replace=1`` to
   switch accounts), answers 302 to a one-time link on the public callback,
   ``…/oauth/calendly/callback?link=<nonce>``, good for :data:`HOP_TTL` seconds
   (:mod:`calendly_brevo.calendly.connect`). ``calendly-brevo oauth connect-url [--replace]``
   prints such a link directly (15 minutes), so the operator needs no admin port at all.
2. ``callback?link=`` uses the link once (403 when unknown, expired or used), then redirects to
   Calendly's authorize page with PKCE (S256) and a random ``state``; the state and code verifier
   travel in a short-lived cookie sealed with the connector's Fernet key (see
   :mod:`calendly_brevo.calendly.oauth`), set here, on the host Calendly will send the browser
   back to, so any replica can take the callback and only this browser can finish it.
3. ``callback?state=&code=`` refuses a missing or mismatched state or cookie with 400 and stores
   nothing; otherwise it exchanges the code, stores the tokens encrypted in ``oauth_tokens`` and
   shows a page without them.

Without ``connectors.calendly.oauth.client_id`` both routes answer 404 saying how to enable
OAuth. A Personal Access Token needs none of this.

The callback answers 409 for a token of another Calendly account than the connected one unless
the start asked to replace it (see :mod:`calendly_brevo.calendly.connect`). Every connect and
refusal is logged and counted in ``calendly_brevo_oauth_connects_total{result}``.
"""

from __future__ import annotations

import asyncio
import html

import httpx
from aiohttp import web

from calendly_brevo import metrics
from calendly_brevo.calendly import oauth
from calendly_brevo.calendly.connect import consume_link, issue_link, same_account
from calendly_brevo.calendly.tokens import OAuthTokenStore
from calendly_brevo.config import Settings
from calendly_brevo.errors import ConfigError, ConnectorError
from calendly_brevo.logs import get_logger
from receiver.admin import admin_guard
from receiver.auth_limit import limiter_for

log = get_logger("calendly_brevo.receiver.oauth")

COOKIE = "calendly_oauth"
#: The admin start's one-time link is followed by the same browser at once: a short life.
HOP_TTL = 120
NOT_CONFIGURED = (
    "Calendly OAuth is not configured: set CALENDLY_CLIENT_ID, CALENDLY_CLIENT_SECRET and "
    "CALENDLY_REDIRECT_URI (or PUBLIC_URL). A Personal Access Token (CALENDLY_ACCESS_TOKEN) "
    "works without OAuth."
)
NEEDS_KEY = (
    "Starting a Calendly connection needs the admin token (Authorization: Bearer, on the admin "
    "port) or a one-time link: run `calendly-brevo oauth connect-url` and open the link it prints."
)


class AccountMismatch(Exception):
    """The token is for another Calendly account than the connected one."""

    def __init__(self, owner: str | None, organization: str | None) -> None:
        super().__init__(owner, organization)
        self.owner, self.organization = owner, organization


def _refused(result: str, title: str, body: str, status: int, **fields: object) -> web.Response:
    metrics.OAUTH_CONNECTS.labels(result).inc()
    log.warning("oauth_connect_refused", result=result, status=status, **fields)
    return _page(title, body, status)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>{title}</h1><p>{body}</p></body></html>"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=html.escape(body)),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def setup_oauth_start(
    app: web.Application, settings: Settings, token_store: OAuthTokenStore
) -> None:
    """Add ``GET /oauth/calendly/start`` to the admin ``app`` (step 1 of the module docstring)."""
    limiter_for(app)  # the start's admin-token check is rate-limited like the admin API

    async def start(request: web.Request) -> web.StreamResponse:
        if not oauth.oauth_configured(settings):
            return _page("OAuth not configured", NOT_CONFIGURED, 404)
        if (denied := admin_guard(settings, request)) is not None:
            if denied.status == 429:
                metrics.OAUTH_CONNECTS.labels("refused_auth").inc()
                return denied
            return _refused("refused_auth", "Not allowed", NEEDS_KEY, 401, via="none")
        replace = request.query.get("replace") in ("1", "true", "yes")
        try:
            callback = oauth.redirect_uri(settings)
        except ConfigError as exc:
            return _page("OAuth not configured", str(exc), 404)
        link = await asyncio.to_thread(
            issue_link, token_store.sessions, callback, replace=replace, ttl=HOP_TTL
        )
        return web.Response(status=302, headers={"Location": link, "Cache-Control": "no-store"})

    app.router.add_get(oauth.START_PATH, start)


def _complete(
    settings: Settings,
    token_store: OAuthTokenStore,
    http: httpx.Client | None,
    code: str,
    pending: oauth.Pending,
) -> str | None:
    """Exchange the code and store the token, refusing another account unless replacing."""
    client = http or httpx.Client(timeout=15.0)
    try:
        response = oauth.exchange_code(client, settings, code, pending)
        if not pending.replace and not same_account(token_store.load(), response):
            raise AccountMismatch(response.get("owner"), response.get("organization"))
        stored = token_store.save(response)
    finally:
        if http is None:
            client.close()
    return stored.owner_uri


def _no_code(error: str | None) -> web.Response:
    if error:
        return _page("Calendly did not authorize", error, 400)
    return _page("Missing code", "Calendly sent no authorization code.", 400)


def setup_oauth_callback(
    app: web.Application,
    settings: Settings,
    token_store: OAuthTokenStore,
    *,
    http: httpx.Client | None = None,
) -> None:
    """Add ``GET /oauth/calendly/callback`` to the public ``app`` (steps 2 and 3 of the module
    docstring). ``http`` is for tests (a client per call otherwise)."""
    box = token_store.box
    secure = oauth.oauth_configured(settings) and (
        settings.calendly.oauth.redirect_uri or settings.server.public_url or ""
    ).startswith("https://")

    async def begin(link: str) -> web.StreamResponse:
        replace = await asyncio.to_thread(consume_link, token_store.sessions, link)
        if replace is None:
            return _refused(
                "refused_auth",
                "Connect link not valid",
                "This connect link is unknown, expired or already used. "
                "Run `calendly-brevo oauth connect-url` for a new one.",
                403,
                via="link",
            )
        url, sealed = oauth.begin(settings, box, replace=replace)
        response = web.Response(status=302, headers={"Location": url})
        response.set_cookie(
            COOKIE,
            sealed.decode("ascii"),
            max_age=oauth.PENDING_TTL,
            path="/oauth/calendly",
            httponly=True,
            secure=secure,
            samesite="Lax",
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        if not oauth.oauth_configured(settings):
            return _page("OAuth not configured", NOT_CONFIGURED, 404)
        query = request.query
        if link := query.get("link"):
            return await begin(link)
        pending = oauth.check_state(box, request.cookies.get(COOKIE), query.get("state"))
        if pending is None:
            return _refused(
                "bad_state",
                "Invalid OAuth state",
                "The state is missing, expired or does not match this browser's request. "
                f"Start again at {oauth.START_PATH}.",
                400,
            )
        replaced = pending.replace
        code = query.get("code")
        if query.get("error") or not code:
            return _no_code(query.get("error"))
        try:
            owner = await asyncio.to_thread(_complete, settings, token_store, http, code, pending)
        except AccountMismatch as exc:
            return _refused(
                "refused_account",
                "Another Calendly account",
                "This Calendly account is not the one the connector is connected to; nothing "
                "was changed. To switch accounts run `calendly-brevo oauth connect-url --replace`.",
                409,
                owner=exc.owner,
                organization=exc.organization,
            )
        except ConnectorError as exc:
            metrics.OAUTH_CONNECTS.labels("failed").inc()
            log.warning("oauth_exchange_failed", error=str(exc))
            return _page("Could not connect Calendly", str(exc), 502)
        result = "replaced" if replaced else "connected"
        metrics.OAUTH_CONNECTS.labels(result).inc()
        log.info("oauth_connected", result=result, owner=owner)
        response = _page(
            "Calendly connected",
            f"The connector can now call Calendly{f' as {owner}' if owner else ''}. "
            "You can close this page.",
        )
        response.del_cookie(COOKIE, path="/oauth/calendly")
        return response

    app.router.add_get(oauth.CALLBACK_PATH, callback)
