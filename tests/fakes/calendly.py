"""A fake Calendly API v2 (and its OAuth server) for tests and the demo.

    with running_fake_calendly(events=40) as cal:
        client = CalendlyClient(httpx.Client(), StaticToken(cal.pat), base_url=cal.base_url)
        assert client.me()["uri"] == cal.state.user["uri"]

Behaves like the real API where the connector cares:

- bearer auth with PATs (``state.add_pat``, optional scopes → 403 with ``required_scopes``) or the
  OAuth access tokens it issued (they expire: ``access_token_ttl``, ``expire_access_tokens()``);
  401 ``{"title": "Unauthenticated", "message": "The access token is invalid|expired"}``;
- ``/users/me``, ``/event_types``, ``/scheduled_events`` (+ one, + invitees, + one invitee) with
  filters and cursor pagination (``count`` 1..100, ``next_page_token``, ``next_page``);
- ``/webhook_subscriptions`` create/list/get/delete with 409 on a duplicate URL and
  ``state.disable_subscription(uri)``; ``/scheduling_links``; ``/invitee_no_shows``;
  ``/sample_webhook_data``;
- ``/oauth/authorize`` (auto-approves: redirects back with ``code`` and ``state``) and
  ``/oauth/token`` (``authorization_code`` with PKCE S256 check, ``refresh_token`` with
  single-use rotation: a used refresh token gets ``invalid_grant``);
- ``X-RateLimit-Limit/Remaining/Reset`` on every API answer, 429 over ``rate_limit`` per window
  per token, ``force_429 = N`` to refuse the next N requests;
- ``state.generate(N, ...)``: N scheduled events with group events, cancellations, reschedule
  pairs and no-shows.

``python -m tests.fakes.calendly --port 8082 [--events 50]`` serves it and prints a PAT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.calendly_state import FakeCalendly, Grant, iso, parse, s256
from tests.fakes.threaded import ThreadedServer

__all__ = [
    "FakeCalendly",
    "FakeCalendlyServer",
    "create_fake_calendly_app",
    "running_fake_calendly",
]

STATE = web.AppKey("state", FakeCalendly)
GRANT = web.RequestKey("grant", Grant)
SCOPE_NEEDED = {
    "users": "users:read",
    "event_types": "event_types:read",
    "scheduled_events": "scheduled_events:read",
    "scheduling_links": "scheduling_links:write",
    "webhook_subscriptions": "webhooks:read",
    "invitee_no_shows": "scheduled_events:write",
    "sample_webhook_data": "webhooks:read",
}


def _err(status: int, title: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"title": title, "message": message, **extra}, status=status)


def _bad(message: str, parameter: str | None = None) -> web.Response:
    details = [{"parameter": parameter, "message": message}] if parameter else []
    return _err(400, "Invalid Argument", "The supplied parameters are invalid.", details=details)


def _not_found() -> web.Response:
    return _err(404, "Resource Not Found", "The server could not find the requested resource.")


# --- middleware: auth, scopes, rate limits ------------------------------------------------------
@web.middleware
async def api_middleware(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path.startswith("/oauth/"):
        return await handler(request)  # type: ignore[no-any-return]
    state.requests.append((request.method, request.path, dict(request.query)))
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    grant = state.grants.get(token)
    if grant is None:
        return _err(401, "Unauthenticated", "The access token is invalid")
    if grant.expires_at is not None and grant.expires_at < time.time():
        return _err(401, "Unauthenticated", "The access token is expired")
    now = time.time()
    start, used = state._window.get(token, (now, 0))
    if now - start >= state.rate_window:
        start, used = now, 0
    reset = max(0, int(start + state.rate_window - now))
    if state.force_429 > 0 or used >= state.rate_limit:
        forced = state.force_429 > 0
        state.force_429 = max(0, state.force_429 - 1)
        resp = _err(429, "Too Many Requests", "Rate limit exceeded")
        resp.headers.update(
            {
                "X-RateLimit-Limit": str(state.rate_limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(state.force_429_reset if forced else reset),
            }
        )
        return resp
    state._window[token] = (start, used + 1)
    needed = SCOPE_NEEDED.get(request.path.strip("/").split("/")[0])
    if request.method != "GET" and needed == "webhooks:read":
        needed = "webhooks:write"
    if grant.scopes is not None and needed and needed not in grant.scopes:
        write = needed.replace(":read", ":write")
        if write not in grant.scopes:
            return _err(
                403,
                "Permission Denied",
                "You do not have permission to access this resource.",
                required_scopes=[needed],
            )
    request[GRANT] = grant
    resp = await handler(request)
    resp.headers.update(
        {
            "X-RateLimit-Limit": str(state.rate_limit),
            "X-RateLimit-Remaining": str(max(0, state.rate_limit - used - 1)),
            "X-RateLimit-Reset": str(reset),
        }
    )
    return resp  # type: ignore[no-any-return]


# --- pagination ---------------------------------------------------------------------------------
def _page(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    q = request.query
    try:
        count = int(q.get("count", "20"))
    except ValueError:
        return _bad("must be an integer", "count")
    if not 1 <= count <= 100:
        return _bad("must be between 1 and 100", "count")
    offset = 0
    if q.get("page_token"):
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(q["page_token"] + "==="))["o"])
        except (ValueError, KeyError, TypeError):
            return _bad("is invalid", "page_token")
    chunk = items[offset : offset + count]

    def token(o: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"o": o}).encode()).decode().rstrip("=")

    nxt = token(offset + count) if offset + count < len(items) else None
    prev = token(max(0, offset - count)) if offset > 0 else None
    base = f"{request.app[STATE].uri_base}{request.path}"
    keep = {k: v for k, v in q.items() if k != "page_token"}

    def link(t: str | None) -> str | None:
        return f"{base}?{urlencode({**keep, 'page_token': t})}" if t else None

    return web.json_response(
        {
            "collection": chunk,
            "pagination": {
                "count": len(chunk),
                "next_page": link(nxt),
                "previous_page": link(prev),
                "next_page_token": nxt,
                "previous_page_token": prev,
            },
        }
    )


def _uri(request: web.Request, kind: str) -> str:
    return f"{request.app[STATE].uri_base}/{kind}/{request.match_info['uuid']}"


# --- handlers -----------------------------------------------------------------------------------
async def users_me(request: web.Request) -> web.Response:
    return web.json_response({"resource": request.app[STATE].user})


def _owner_filter(request: web.Request) -> web.Response | None:
    state, q = request.app[STATE], request.query
    if not (q.get("user") or q.get("organization") or q.get("group")):
        return _bad("one of user, organization or group is required", "user")
    if q.get("organization") and q["organization"] != state.org:
        return _err(403, "Permission Denied", "You do not have permission to access this resource.")
    if q.get("user") and q["user"] != state.user["uri"]:
        return _err(403, "Permission Denied", "You do not have permission to access this resource.")
    return None


async def event_types(request: web.Request) -> web.Response:
    if (denied := _owner_filter(request)) is not None:
        return denied
    items = request.app[STATE].event_types
    if request.query.get("active") in ("true", "false"):
        want = request.query["active"] == "true"
        items = [e for e in items if e["active"] == want]
    return _page(request, sorted(items, key=lambda e: str(e["name"])))


async def scheduled_events(request: web.Request) -> web.Response:
    if (denied := _owner_filter(request)) is not None:
        return denied
    state, q = request.app[STATE], request.query
    items = list(state.events)
    if q.get("status"):
        if q["status"] not in ("active", "canceled"):
            return _bad("must be active or canceled", "status")
        items = [e for e in items if e["status"] == q["status"]]
    try:
        if q.get("min_start_time"):
            lo = parse(q["min_start_time"])
            items = [e for e in items if parse(e["start_time"]) >= lo]
        if q.get("max_start_time"):
            hi = parse(q["max_start_time"])
            items = [e for e in items if parse(e["start_time"]) < hi]
    except ValueError:
        return _bad("must be an ISO 8601 UTC time", "min_start_time")
    if q.get("invitee_email"):
        items = [
            e
            for e in items
            if any(i["email"] == q["invitee_email"] for i in state.invitees[e["uri"]])
        ]
    field, _, direction = q.get("sort", "start_time:asc").partition(":")
    items.sort(key=lambda e: (str(e.get(field, "")), e["uri"]), reverse=direction == "desc")
    return _page(request, items)


async def scheduled_event(request: web.Request) -> web.Response:
    event = request.app[STATE].event_by_uri(_uri(request, "scheduled_events"))
    return web.json_response({"resource": event}) if event else _not_found()


async def event_invitees(request: web.Request) -> web.Response:
    state, q = request.app[STATE], request.query
    uri = _uri(request, "scheduled_events")
    if uri not in state.invitees:
        return _not_found()
    items = list(state.invitees[uri])
    if q.get("status"):
        items = [i for i in items if i["status"] == q["status"]]
    if q.get("email"):
        items = [i for i in items if i["email"] == q["email"]]
    items.sort(key=lambda i: str(i["created_at"]), reverse=q.get("sort") == "created_at:desc")
    return _page(request, items)


async def event_invitee(request: web.Request) -> web.Response:
    state = request.app[STATE]
    uri = f"{_uri(request, 'scheduled_events')}/invitees/{request.match_info['inv']}"
    inv = next((i for i in state.all_invitees() if i["uri"] == uri), None)
    return web.json_response({"resource": inv}) if inv else _not_found()


async def create_scheduling_link(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    if body.get("max_event_count") != 1:
        return _bad("must be 1", "max_event_count")
    if body.get("owner_type") != "EventType":
        return _bad("must be EventType", "owner_type")
    if not any(et["uri"] == body.get("owner") for et in state.event_types):
        return _bad("event type not found", "owner")
    link = {
        "booking_url": f"https://calendly.com/d/{secrets.token_hex(3)}-{secrets.token_hex(2)}/x",
        "owner": body["owner"],
        "owner_type": "EventType",
    }
    state.scheduling_links.append(link)
    return web.json_response({"resource": link}, status=201)


SUBSCRIBABLE_EVENTS = frozenset(
    {
        "invitee.created",
        "invitee.canceled",
        "invitee_no_show.created",
        "invitee_no_show.deleted",
        "routing_form_submission.created",
        "event_type.created",
        "event_type.updated",
        "event_type.deleted",
        "meeting_recap.created",
        "meeting_recap.updated",
        "meeting_recap.deleted",
        "contact.created",
        "contact.updated",
        "contact.deleted",
    }
)


async def create_subscription(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    for key in ("url", "events", "organization", "scope"):
        if not body.get(key):
            return _bad("is required", key)
    # The events Calendly accepts, and its scope rule for routing forms ("organization only"):
    # https://developer.calendly.com/api-docs/calendly-api/webhooks/create-webhook-subscription
    # (see shared/reference/calendly-api.md, "Event names" and "Scopes per event").
    unknown = [e for e in body["events"] if e not in SUBSCRIBABLE_EVENTS]
    if unknown:
        return _bad(f"{unknown[0]} is not a valid event", "events")
    if "routing_form_submission.created" in body["events"] and body["scope"] != "organization":
        return _bad("routing_form_submission.created requires organization scope", "events")
    if state.webhooks_plan_gate:
        return _err(403, "Permission Denied", "Please upgrade to a paid Calendly account.")
    if body["organization"] != state.org:
        return _err(403, "Permission Denied", "You do not have permission to access this resource.")
    if body["scope"] == "user" and body.get("user") != state.user["uri"]:
        return _bad("must be your own user", "user")
    if any(s["callback_url"] == body["url"] for s in state.subscriptions.values()):
        return _err(409, "Already Exists", "Hook with this url already exists")
    now = iso(datetime.now(UTC))
    uri = f"{state.uri_base}/webhook_subscriptions/WH{state.uid()}"
    sub = {
        "uri": uri,
        "callback_url": body["url"],
        "created_at": now,
        "updated_at": now,
        "retry_started_at": None,
        "state": "active",
        "events": list(body["events"]),
        "scope": body["scope"],
        "organization": state.org,
        "user": body.get("user") if body["scope"] == "user" else None,
        "group": None,
        "creator": request[GRANT].owner,
    }
    state.subscriptions[uri] = sub
    state.signing_keys[uri] = body.get("signing_key")
    return web.json_response({"resource": sub}, status=201)


async def list_subscriptions(request: web.Request) -> web.Response:
    state, q = request.app[STATE], request.query
    if not q.get("organization") or not q.get("scope"):
        return _bad("organization and scope are required", "scope")
    if q["organization"] != state.org:
        return _err(403, "Permission Denied", "You do not have permission to access this resource.")
    items = [s for s in state.subscriptions.values() if s["scope"] == q["scope"]]
    if q["scope"] == "user":
        if not q.get("user"):
            return _bad("is required for user scope", "user")
        items = [s for s in items if s["user"] == q["user"]]
    items.sort(key=lambda s: str(s["created_at"]))
    return _page(request, items)


async def subscription(request: web.Request) -> web.Response:
    state = request.app[STATE]
    uri = _uri(request, "webhook_subscriptions")
    if uri not in state.subscriptions:
        return _not_found()
    if request.method == "DELETE":
        del state.subscriptions[uri]
        return web.Response(status=204)
    return web.json_response({"resource": state.subscriptions[uri]})


async def create_no_show(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    inv = next((i for i in state.all_invitees() if i["uri"] == body.get("invitee")), None)
    if inv is None:
        return _bad("invitee not found", "invitee")
    return web.json_response({"resource": state.mark_no_show(inv)}, status=201)


async def no_show(request: web.Request) -> web.Response:
    state = request.app[STATE]
    uri = _uri(request, "invitee_no_shows")
    found = state.no_shows.get(uri)
    if found is None:
        return _not_found()
    if request.method == "DELETE":
        del state.no_shows[uri]
        for inv in state.all_invitees():
            if (inv.get("no_show") or {}).get("uri") == uri:
                inv["no_show"] = None
        return web.Response(status=204)
    return web.json_response({"resource": found})


async def sample_webhook_data(request: web.Request) -> web.Response:
    state = request.app[STATE]
    invitees = state.all_invitees()
    if not invitees:
        return _not_found()
    inv = invitees[0]
    event = state.event_by_uri(inv["event"])
    return web.json_response(
        {
            "event": request.query.get("event", "invitee.created"),
            "created_at": iso(datetime.now(UTC)),
            "created_by": state.user["uri"],
            "payload": {**inv, "scheduled_event": event},
        }
    )


# --- OAuth --------------------------------------------------------------------------------------
async def authorize(request: web.Request) -> web.StreamResponse:
    state, q = request.app[STATE], request.query
    if q.get("client_id") not in state.oauth_clients or q.get("response_type") != "code":
        return web.json_response({"error": "invalid_request"}, status=400)
    if not q.get("redirect_uri"):
        return web.json_response({"error": "invalid_request"}, status=400)
    if q.get("code_challenge") and q.get("code_challenge_method", "plain") != "S256":
        return web.json_response({"error": "invalid_request"}, status=400)
    code = secrets.token_urlsafe(16)
    state.codes[code] = {
        "client_id": q["client_id"],
        "redirect_uri": q["redirect_uri"],
        "challenge": q.get("code_challenge"),
        "expires": time.time() + 600,
    }
    params = {"code": code, **({"state": q["state"]} if "state" in q else {})}
    sep = "&" if "?" in q["redirect_uri"] else "?"
    raise web.HTTPFound(f"{q['redirect_uri']}{sep}{urlencode(params)}")


def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


async def token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = dict(await request.post())
    state.token_requests.append({k: str(v) for k, v in form.items()})
    client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
    expected = state.oauth_clients.get(client_id)
    if expected is None or (expected and secret != expected):
        return _oauth_error("invalid_client", "Client authentication failed", 401)
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        code = state.codes.pop(str(form.get("code", "")), None)
        if code is None or code["expires"] < time.time() or code["client_id"] != client_id:
            return _oauth_error("invalid_grant", "The authorization code is invalid or expired")
        if form.get("redirect_uri") != code["redirect_uri"]:
            return _oauth_error("invalid_grant", "redirect_uri does not match")
        if code["challenge"] and s256(str(form.get("code_verifier", ""))) != code["challenge"]:
            return _oauth_error("invalid_grant", "PKCE verification failed")
        return web.json_response(state.issue())
    if grant_type == "refresh_token":
        old: Grant | None = state.refresh_tokens.pop(str(form.get("refresh_token", "")), None)
        if old is None:
            return _oauth_error(
                "invalid_grant",
                "The provided authorization grant is invalid, expired, revoked, does not match "
                "the redirection URI used in the authorization request, or was issued to another "
                "client.",
            )
        return web.json_response(state.issue(old.scopes))
    return _oauth_error("unsupported_grant_type", f"{grant_type!r} is not supported")


def create_fake_calendly_app(state: FakeCalendly) -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[STATE] = state
    r = app.router
    r.add_get("/users/me", users_me)
    r.add_get("/event_types", event_types)
    r.add_get("/scheduled_events", scheduled_events)
    r.add_get("/scheduled_events/{uuid}", scheduled_event)
    r.add_get("/scheduled_events/{uuid}/invitees", event_invitees)
    r.add_get("/scheduled_events/{uuid}/invitees/{inv}", event_invitee)
    r.add_post("/scheduling_links", create_scheduling_link)
    r.add_post("/webhook_subscriptions", create_subscription)
    r.add_get("/webhook_subscriptions", list_subscriptions)
    r.add_get("/webhook_subscriptions/{uuid}", subscription)
    r.add_delete("/webhook_subscriptions/{uuid}", subscription)
    r.add_post("/invitee_no_shows", create_no_show)
    r.add_get("/invitee_no_shows/{uuid}", no_show)
    r.add_delete("/invitee_no_shows/{uuid}", no_show)
    r.add_get("/sample_webhook_data", sample_webhook_data)
    r.add_get("/oauth/authorize", authorize)
    r.add_post("/oauth/token", token)
    return app


# --- running it ---------------------------------------------------------------------------------
class FakeCalendlyServer(ThreadedServer):
    """The fake on 127.0.0.1 in a daemon thread with its own event loop (``with`` or ``async
    with``). ``pat`` is a full-access Personal Access Token created at start."""

    name = "fake Calendly"

    def __init__(self, state: FakeCalendly, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.state = state
        self.pat = state.add_pat()

    def make_app(self) -> web.Application:
        return create_fake_calendly_app(self.state)

    @property
    def base_url(self) -> str:
        return self.url


@contextmanager
def running_fake_calendly(
    state: FakeCalendly | None = None, *, port: int = 0, events: int = 0, **options: Any
) -> Iterator[FakeCalendlyServer]:
    """Start a fake Calendly (``options`` go to :class:`FakeCalendly`; ``events`` generates
    that many scheduled events), stop it on exit."""
    state = state or FakeCalendly(**options)
    if events:
        state.generate(events)
    with FakeCalendlyServer(state, port=port) as server:
        yield server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.calendly",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--events", type=int, default=20, help="scheduled events to generate")
    parser.add_argument("--pat", default=None, help="accept this Personal Access Token")
    parser.add_argument("--client-id", default=None, help="register an OAuth client")
    parser.add_argument("--client-secret", default="")
    args = parser.parse_args(argv)
    state = FakeCalendly()
    pat = state.add_pat(args.pat)
    if args.client_id:
        state.add_oauth_client(args.client_id, args.client_secret)
    counts = state.generate(args.events)

    async def serve() -> None:
        runner = web.AppRunner(create_fake_calendly_app(state), shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        print(
            f"fake Calendly on http://{args.host}:{args.port} (PAT {pat}; {counts})",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
