"""The fake Brevo aiohttp app: ``/v3`` (Brevo's API) and ``/__fake__`` (control, no auth).

Each ``/v3`` request goes through one middleware, in this order:

1. logged in ``state.requests`` (its status is filled in when decided);
2. auth: a missing ``api-key`` header, or one that differs from ``state.api_key`` when that is
   set, answers 401 ``{"code":"unauthorized","message":"Key not found"}`` (not counted);
3. rate limit: the request is counted in its family's window;
4. validation against the spec plus the strict checks; a failure is recorded in
   ``state.violations`` even when the request is then answered 429;
5. over the limit: 429 ``too_many_requests`` (``state.rate_limited[family] += 1``);
   invalid: 400 ``invalid_parameter`` with what is wrong (404 when the spec has no such
   path or method); in the spec but not implemented here: 501, also recorded as a violation
   so tests notice;
6. injected faults (``state.fault_rules``), then the handler.

Every ``/v3`` answer carries ``x-sib-ratelimit-limit|remaining|reset`` and never Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes import brevo_account as account
from tests.fakes import brevo_bulk as bulk
from tests.fakes import brevo_events as events
from tests.fakes import brevo_ops as ops
from tests.fakes import brevo_strict as strict
from tests.fakes.brevo_control import add_control_routes
from tests.fakes.brevo_faults import (
    DEFAULT_SLOW_SECONDS,
    FaultRecord,
    FaultRule,
    Window,
    fault_status,
    pick_fault,
)
from tests.fakes.brevo_records import RequestRecord, Violation, family_of
from tests.fakes.brevo_state import FakeBrevo
from tests.fakes.openapi_validation import DEFAULT_SPEC_PATH, BrevoSpec

STATE_KEY = web.AppKey("fake_brevo_state", FakeBrevo)
SPEC_KEY = web.AppKey("fake_brevo_spec", BrevoSpec)
CLOSING_KEY = web.AppKey("fake_brevo_closing", asyncio.Event)
SEQ_KEY = web.RequestKey("fake_brevo_seq", int)
BODY_KEY = web.RequestKey("fake_brevo_body", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Op = Callable[[FakeBrevo, web.Request, Any, int], ops.Reply]


def _json(status: int, body: dict[str, Any] | None) -> web.Response:
    if body is None:
        return web.Response(status=status)
    return web.json_response(body, status=status)


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"code": code, "message": message})


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


async def _hold(request: web.Request, seconds: float) -> None:
    """Sleep, but wake at once when the server shuts down."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(request.app[CLOSING_KEY].wait(), timeout=seconds)


def _finish(
    record: RequestRecord, response: web.StreamResponse, window: Window
) -> web.StreamResponse:
    response.headers.update(window.headers())
    record.status = response.status
    record.at = time.monotonic()
    return response


@web.middleware
async def brevo_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v3/"):
        return await handler(request)
    state, spec = request.app[STATE_KEY], request.app[SPEC_KEY]
    raw = await request.read()
    body = _parse(raw)
    family = family_of(request.method, request.path)
    now = time.monotonic()
    record = RequestRecord(
        state.next_seq(), request.method, request.path, family, 0, now, body=body, arrived=now
    )
    request[SEQ_KEY], request[BODY_KEY] = record.seq, body
    state.requests.append(record)

    key = request.headers.get("api-key")
    if key is None or (state.api_key is not None and key != state.api_key):
        return _finish(
            record, _error(401, "unauthorized", "Key not found"), state.limiter.peek(family)
        )
    window = state.limiter.hit(family)
    found = spec.operation(request.method, request.path)
    errors = spec.request_errors(
        request.method,
        request.path,
        request.query,
        request.headers,
        raw or None,
        request.content_type,
    )
    if not errors and found is not None:
        errors = strict.strict_errors(state, found[1].get("operationId", ""), body)
    not_implemented = not errors and request.match_info.http_exception is not None
    if not_implemented:
        errors = [f"{request.method} {request.path}: in the spec, not implemented by the fake"]
    if errors:
        record.violation = True
        state.violations.append(Violation(record.seq, request.method, request.path, tuple(errors)))
    if not window.allowed:
        state.rate_limited[family] += 1
        return _finish(record, _error(429, "too_many_requests", "Too many requests"), window)
    if not_implemented:
        return _finish(record, _error(501, "method_not_allowed", errors[0]), window)
    if found is None:
        return _finish(record, _error(404, "document_not_found", "; ".join(errors)), window)
    if errors:
        return _finish(record, _error(400, "invalid_parameter", "; ".join(errors)), window)

    picked = pick_fault(state.fault_rules, state.rng, request.method, request.path, family, body)
    if picked is not None:
        return await _faulty(request, handler, record, window, *picked)
    response = await handler(request)
    record.effect_applied = response.status < 300
    _check_response(request, raw, response)
    return _finish(record, response, window)


async def _faulty(
    request: web.Request,
    handler: Handler,
    record: RequestRecord,
    window: Window,
    rule: FaultRule,
    repeat: bool = False,
) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    record.fault = rule.kind
    status = fault_status(rule, state.rng)
    delay = 0.0
    response: web.StreamResponse
    if status == 429:
        response = _error(429, "too_many_requests", "Too many requests (injected)")
        window = Window(window.limit, 0, window.reset, False)
    elif status == 400:
        response = _error(400, "invalid_parameter", "Injected permanent failure")
    elif status is not None:
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        response = web.Response(
            status=status,
            text=f"<html><body>{text.get(status, 'Error')}</body></html>",
            content_type="text/html",
        )
    elif rule.kind == "slow":
        delay = rule.delay if rule.delay is not None else DEFAULT_SLOW_SECONDS
        await _hold(request, delay)
        response = await handler(request)
        record.effect_applied = response.status < 300
    else:  # timeout
        delay = rule.delay if rule.delay is not None else state.timeout_hold_seconds
        apply = rule.apply_effect if rule.apply_effect is not None else state.timeout_applies_effect
        if apply:
            response = await handler(request)
            record.effect_applied = response.status < 300
        else:
            response = _error(504, "gateway_timeout", "Injected timeout")
    state.faults.append(
        FaultRecord(
            rule.id,
            rule.kind,
            record.seq,
            request.method,
            request.path,
            record.family,
            status if rule.kind != "timeout" else response.status,
            delay,
            record.effect_applied,
            repeat,
        )
    )
    _finish(record, response, window)
    if rule.kind == "timeout":
        await _hold(request, delay)
    return response


def _check_response(request: web.Request, raw: bytes, response: web.StreamResponse) -> None:
    state, spec = request.app[STATE_KEY], request.app[SPEC_KEY]
    if not state.validate_responses or not isinstance(response, web.Response):
        return
    body = response.body if isinstance(response.body, bytes) and response.body else None
    errors = spec.response_errors(
        request.method,
        request.path,
        request.query,
        request.headers,
        raw or None,
        request.content_type,
        response.status,
        body,
        response.content_type if body else "",
    )
    if errors:
        state.response_violations.append(
            Violation(request[SEQ_KEY], request.method, request.path, tuple(errors))
        )


def _route(op: Op) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            status, body = op(request.app[STATE_KEY], request, request[BODY_KEY], request[SEQ_KEY])
        except ops.BrevoError as error:
            return _json(error.status, error.body())
        return _json(status, body)

    return handle


def _identifier_type(request: web.Request) -> str | None:
    return request.query.get("identifierType")


_ROUTES: list[tuple[str, str, Op]] = [
    ("POST", "/v3/contacts", lambda s, r, b, q: ops.create_contact(s, b, q)),
    ("GET", "/v3/contacts", lambda s, r, b, q: bulk.list_contacts(s, r.query, q)),
    ("GET", "/v3/contacts/attributes", lambda s, r, b, q: account.get_attributes(s)),
    (
        "POST",
        "/v3/contacts/attributes/{category}/{name}",
        lambda s, r, b, q: account.create_attribute(
            s, r.match_info["category"], r.match_info["name"], b
        ),
    ),
    ("GET", "/v3/contacts/lists", lambda s, r, b, q: account.get_lists(s, r.query)),
    ("POST", "/v3/contacts/lists", lambda s, r, b, q: account.create_list(s, b)),
    (
        "GET",
        r"/v3/contacts/lists/{list_id:\d+}",
        lambda s, r, b, q: account.get_list(s, int(r.match_info["list_id"])),
    ),
    (
        "POST",
        r"/v3/contacts/lists/{list_id:\d+}/contacts/add",
        lambda s, r, b, q: ops.change_list_members(s, int(r.match_info["list_id"]), b, add=True),
    ),
    (
        "POST",
        r"/v3/contacts/lists/{list_id:\d+}/contacts/remove",
        lambda s, r, b, q: ops.change_list_members(s, int(r.match_info["list_id"]), b, add=False),
    ),
    (
        "GET",
        "/v3/contacts/{identifier}",
        lambda s, r, b, q: ops.get_contact(s, r.match_info["identifier"], _identifier_type(r)),
    ),
    (
        "PUT",
        "/v3/contacts/{identifier}",
        lambda s, r, b, q: ops.update_contact(
            s, r.match_info["identifier"], _identifier_type(r), b, q
        ),
    ),
    (
        "DELETE",
        "/v3/contacts/{identifier}",
        lambda s, r, b, q: ops.delete_contact(s, r.match_info["identifier"], _identifier_type(r)),
    ),
    ("GET", "/v3/account", lambda s, r, b, q: account.get_account(s)),
    ("POST", "/v3/events", lambda s, r, b, q: events.create_event(s, b, q)),
    ("POST", "/v3/events/batch", lambda s, r, b, q: bulk.create_batch_events(s, b, q)),
    ("POST", "/v3/contacts/batch", lambda s, r, b, q: bulk.update_batch_contacts(s, b, q)),
    ("POST", "/v3/contacts/import", lambda s, r, b, q: bulk.import_contacts(s, b, q)),
    (
        "GET",
        r"/v3/processes/{process_id:\d+}",
        lambda s, r, b, q: bulk.get_process(s, int(r.match_info["process_id"])),
    ),
    ("GET", "/v3/events", lambda s, r, b, q: events.get_events(s, r.query)),
]


def create_fake_brevo_app(
    state: FakeBrevo, *, spec_path: Path = DEFAULT_SPEC_PATH
) -> web.Application:
    """The fake Brevo for ``state``. The first call in a process parses the spec (~0.3 s)."""
    app = web.Application(middlewares=[brevo_middleware])
    app[STATE_KEY] = state
    app[SPEC_KEY] = BrevoSpec(spec_path)
    app[CLOSING_KEY] = asyncio.Event()

    async def wake_held_requests(app: web.Application) -> None:
        app[CLOSING_KEY].set()

    app.on_shutdown.append(wake_held_requests)
    for method, path, op in _ROUTES:
        app.router.add_route(method, path, _route(op))
    add_control_routes(app, STATE_KEY)
    return app
