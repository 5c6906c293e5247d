"""The fake's control API under ``/__fake__/`` (no auth), for out-of-process tests and the demo.

=======================  ==========================================================  =========
``GET  /__fake__/state``   the state snapshot (contacts, lists, events, counts,         200
                           violations, rate_limited, faults, requests, ...)
``POST /__fake__/reset``   back to the start configuration                             204
``POST /__fake__/faults``  ``{"kind": "5xx", "family"?, "path"?, "probability"?,        201
                           "count"?, "method"?, "status"?, "delay"?,
                           "apply_effect"?}``; answers the rule
``DELETE /__fake__/faults`` remove every fault rule                                    204
``POST /__fake__/limits``  ``{"family": "contacts", "limit": 5, "window_seconds": 1}``  200
``POST /__fake__/lists``   ``{"name": "Booked", "id"?: 12, "folderId"?: 1}``            201
``POST /__fake__/attributes`` ``{"name": "BOOKED_AT", "type"?: "date",                  201
                           "category"?: "normal"}``
=======================  ==========================================================  =========

A bad control request answers 400 ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.brevo_state import FakeBrevo

ControlOp = Callable[[FakeBrevo, Any], web.Response]


def _control(
    key: web.AppKey[FakeBrevo], op: ControlOp
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        try:
            return op(request.app[key], body)
        except (ValueError, TypeError, KeyError) as error:
            return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=400)

    return handle


def _state(state: FakeBrevo, _: Any) -> web.Response:
    return web.json_response(state.snapshot())


def _reset(state: FakeBrevo, _: Any) -> web.Response:
    state.reset()
    return web.Response(status=204)


def _inject(state: FakeBrevo, body: Any) -> web.Response:
    if not isinstance(body, dict) or "kind" not in body:
        raise ValueError('expected {"kind": ..., ...}')
    kind = body.pop("kind")
    return web.json_response(state.inject(kind, **body).to_json(), status=201)


def _clear_faults(state: FakeBrevo, _: Any) -> web.Response:
    state.clear_faults()
    return web.Response(status=204)


def _limits(state: FakeBrevo, body: Any) -> web.Response:
    state.set_limit(body["family"], int(body["limit"]), float(body["window_seconds"]))
    return web.json_response({f: list(v) for f, v in state.limits.items()})


def _lists(state: FakeBrevo, body: Any) -> web.Response:
    list_id = state.add_list(
        body.get("name"), list_id=body.get("id"), folder_id=int(body.get("folderId", 1))
    )
    return web.json_response({"id": list_id}, status=201)


def _attributes(state: FakeBrevo, body: Any) -> web.Response:
    state.add_attribute(body["name"], body.get("type", "text"), body.get("category", "normal"))
    return web.Response(status=201)


def add_control_routes(app: web.Application, key: web.AppKey[FakeBrevo]) -> None:
    router = app.router
    router.add_get("/__fake__/state", _control(key, _state))
    router.add_post("/__fake__/reset", _control(key, _reset))
    router.add_post("/__fake__/faults", _control(key, _inject))
    router.add_delete("/__fake__/faults", _control(key, _clear_faults))
    router.add_post("/__fake__/limits", _control(key, _limits))
    router.add_post("/__fake__/lists", _control(key, _lists))
    router.add_post("/__fake__/attributes", _control(key, _attributes))
