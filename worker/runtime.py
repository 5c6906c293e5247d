"""Wire a worker process: services → store, rate limiter, Brevo client → pipeline → actors."""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
from dramatiq.middleware import Middleware

from calendly_brevo.bootstrap import Services
from calendly_brevo.brevo.client import BrevoClient, make_http_client
from calendly_brevo.ratelimit.bucket import FAMILIES, MemoryBackend, RedisBackend, TokenBucket
from worker.actors import declare_actors
from worker.broker import make_broker
from worker.pipeline import Pipeline
from worker.store import Store


def make_limiter(services: Services) -> TokenBucket:
    settings = services.settings
    buckets = {family: settings.brevo.bucket(family) for family in FAMILIES}
    backend = RedisBackend(services.redis) if settings.storage.redis_url else MemoryBackend()
    return TokenBucket(backend, buckets=buckets)


def make_brevo(services: Services) -> BrevoClient:
    settings = services.settings
    key = settings.brevo.api_key.get_secret_value() if settings.brevo.api_key else None
    return BrevoClient(
        make_http_client(settings),
        key or None,
        make_limiter(services),
        sms_fallback_attribute=settings.brevo.sms_fallback_attribute,
    )


def build_pipeline(services: Services, brevo: BrevoClient | None = None) -> Pipeline:
    return Pipeline(
        services.settings, Store(services.engine, services.sessions), brevo or make_brevo(services)
    )


@dataclass
class WorkerRuntime:
    broker: dramatiq.Broker
    pipeline: Pipeline
    actor: dramatiq.Actor  # type: ignore[type-arg]


def build_runtime(
    services: Services,
    *,
    pipeline: Pipeline | None = None,
    extra_middleware: list[Middleware] | None = None,
) -> WorkerRuntime:
    broker = make_broker(services.settings, extra=extra_middleware)
    pipe = pipeline or build_pipeline(services)
    actor = declare_actors(broker, services.settings, lambda: pipe)
    return WorkerRuntime(broker, pipe, actor)
