"""The receiver: verify, enqueue, answer fast. It never calls Brevo or Calendly.

Two listeners, two applications; nothing happens at import time and tests use the same
factories with fakes:

- ``create_app(settings, queue=...)``: the public port (``server.port``), the only one the
  internet reaches: ``POST /webhooks/calendly``, ``GET /healthz``, ``GET /readyz`` and, added by
  :mod:`receiver.main`, the OAuth callback.
- ``create_admin_app(settings)``: the admin port (``server.admin_port``): ``GET /metrics`` and,
  added by :mod:`receiver.main`, the admin API and the OAuth start, which need the admin token.
  Anything an operator drives (the console at /console/) belongs here too, never on the
  public port.
  Anything else on the public port is a 404.

``POST /webhooks/calendly`` answers:

====  ==========================================================================
202   verified, parsed as a JSON object with an ``event``, durably enqueued
400   signed correctly but not a JSON object with ``event`` and ``payload``
401   unsigned, malformed signature header, forged, or outside the tolerance
408   the body did not arrive within ``webhook.read_timeout_seconds`` (a slow client)
413   body larger than ``webhook.max_body_bytes``
503   the queue could not take it: Calendly will retry
====  ==========================================================================
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from calendly_brevo import metrics
from calendly_brevo.config import Settings
from calendly_brevo.errors import QueueUnavailable, SignatureError
from calendly_brevo.key_labels import config_key_names
from calendly_brevo.key_labels import key_label as label_of
from calendly_brevo.logs import get_logger
from calendly_brevo.signature import HEADER, verify_key
from receiver.metrics_view import render_metrics

log = get_logger("calendly_brevo.receiver")


class Queue(Protocol):
    async def enqueue(
        self,
        body: str,
        *,
        received_at: float,
        source: str = "webhook",
        signature_key: str | None = None,
    ) -> str:
        """Put the event on the queue; ``signature_key``: the label of the key that verified
        it (:func:`calendly_brevo.key_labels.key_label`), carried to the worker."""
        ...

    async def ping(self) -> bool: ...


SETTINGS = web.AppKey("settings", Settings)
QUEUE = web.AppKey("queue", Queue)
SIGNING_KEYS = web.AppKey[Callable[[], Sequence[str]]]("signing_keys")
KEY_LABEL = web.AppKey[Callable[[str], str]]("key_label")


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": message, "reason": reason}, status=status)


async def handle_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    hook = settings.calendly.webhook
    event = "other"
    outcome = "accepted"
    try:
        if request.content_length is not None and request.content_length > hook.max_body_bytes:
            outcome = "too_large"
            return _error(413, outcome, f"body larger than {hook.max_body_bytes} bytes")
        try:
            async with asyncio.timeout(hook.read_timeout_seconds):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            outcome = "too_large"
            return _error(413, outcome, f"body larger than {hook.max_body_bytes} bytes")
        except TimeoutError:
            outcome = "read_timeout"
            return _error(408, outcome, f"body not received within {hook.read_timeout_seconds}s")
        keys = request.app[SIGNING_KEYS]()
        try:
            _, which = verify_key(
                keys, body, request.headers.get(HEADER), time.time(), hook.tolerance_seconds
            )
        except SignatureError as exc:
            outcome = exc.reason
            return _error(401, exc.reason, str(exc))
        try:
            # Strict UTF-8 first: json.loads(bytes) would also take UTF-16/32 and lone
            # surrogates, which then fail to decode for the queue (a 500 instead of a 400).
            text = body.decode("utf-8")
            doc = json.loads(text)
        except (ValueError, RecursionError):
            outcome = "malformed"
            return _error(400, outcome, "body is not JSON (UTF-8)")
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("event"), str)
            or not isinstance(doc.get("payload"), dict)
        ):
            outcome = "malformed"
            return _error(400, outcome, "expected a JSON object with 'event' and 'payload'")
        event = metrics.event_label(doc["event"])
        received_at = time.time()
        try:
            message_id = await request.app[QUEUE].enqueue(
                text,
                received_at=received_at,
                source="webhook",
                signature_key=request.app[KEY_LABEL](keys[which]),
            )
        except QueueUnavailable as exc:
            outcome = "queue_down"
            log.error("webhook_enqueue_failed", event_name=doc["event"], error=str(exc))
            return _error(503, outcome, "queue unavailable, retry later")
        if settings.calendly.log_webhooks:
            log.info("webhook_payload", event_name=doc["event"], payload=doc)
        # The hot path: a pre-built body instead of json_response (the id is a UUID: no escaping).
        return web.Response(
            body=b'{"status":"accepted","message_id":"' + message_id.encode() + b'"}',
            status=202,
            content_type="application/json",
        )
    finally:
        metrics.WEBHOOKS_RECEIVED.labels(event, outcome).inc()
        metrics.WEBHOOK_RECEIVE_SECONDS.observe(time.perf_counter() - started)


async def handle_healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    if await request.app[QUEUE].ping():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "queue unavailable"}, status=503)


async def handle_metrics(_request: web.Request) -> web.Response:
    body = render_metrics()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    settings: Settings,
    *,
    queue: Queue | None = None,
    queue_factory: Callable[[], Awaitable[Queue]] | None = None,
    signing_keys: Callable[[], Sequence[str]] | None = None,
    key_label: Callable[[str], str] | None = None,
    extra_setup: Sequence[Callable[[web.Application], None]] = (),
) -> web.Application:
    """Build the receiver. Give ``queue`` (tests) or ``queue_factory`` (opened at start-up).
    ``key_label`` names the key that verified a webhook (default: its place in the config)."""
    keys = tuple(settings.calendly.webhook.keys)
    names = config_key_names(settings.calendly.webhook)
    app = web.Application(client_max_size=settings.calendly.webhook.max_body_bytes)
    app[SETTINGS] = settings
    app[SIGNING_KEYS] = signing_keys or (lambda: keys)
    app[KEY_LABEL] = key_label or partial(label_of, names=names)
    if queue is not None:
        app[QUEUE] = queue
    elif queue_factory is not None:

        async def open_queue(app: web.Application) -> AsyncIterator[None]:
            q = await queue_factory()
            app[QUEUE] = q
            yield
            close = getattr(q, "close", None)
            if close is not None:
                await close()

        app.cleanup_ctx.append(open_queue)
    else:
        raise ValueError("create_app needs a queue or a queue_factory")
    app.router.add_post("/webhooks/calendly", handle_webhook)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    for setup in extra_setup:
        setup(app)
    return app


def create_admin_app(
    settings: Settings, *, extra_setup: Sequence[Callable[[web.Application], None]] = ()
) -> web.Application:
    """Build the admin listener: ``/metrics`` plus whatever ``extra_setup`` adds (admin API,
    OAuth start). Keep its port inside the cluster or on localhost (SECURITY.md)."""
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app.router.add_get("/metrics", handle_metrics)
    for setup in extra_setup:
        setup(app)
    return app
