"""Wire a worker process: services → ledger, rate limiter, Brevo client → pipeline → actors."""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
from dramatiq.middleware import Middleware

from calendly_brevo.bootstrap import Services
from calendly_brevo.brevo.client import BrevoClient, make_http_client
from calendly_brevo.errors import BrevoSetupError
from calendly_brevo.ratelimit.bucket import FAMILIES, MemoryBackend, RedisBackend, TokenBucket
from worker.actors import declare_actors
from worker.broker import make_broker
from worker.pipeline import Pipeline


def make_limiter(services: Services) -> TokenBucket:
    """The process's one bucket: Redis-backed (shared by every worker) or in memory (embedded)."""
    cached: TokenBucket | None = getattr(services, "_limiter", None)
    if cached is not None:
        return cached
    settings = services.settings
    buckets = {family: settings.brevo.bucket(family) for family in FAMILIES}
    backend = RedisBackend(services.redis) if settings.storage.redis_url else MemoryBackend()
    limiter = TokenBucket(backend, buckets=buckets)
    services._limiter = limiter  # type: ignore[attr-defined]
    return limiter


def make_brevo(services: Services) -> BrevoClient:
    settings = services.settings
    # ``brevo.dry_run: true`` keeps the client dry even with a key (it logs, never sends).
    api_key = None if settings.brevo.runs_dry else settings.brevo.api_key
    key = api_key.get_secret_value() if api_key else None
    return BrevoClient(
        make_http_client(settings),
        key or None,
        make_limiter(services),
        sms_fallback_attribute=settings.brevo.sms_fallback_attribute,
    )


def build_pipeline(services: Services, brevo: BrevoClient | None = None) -> Pipeline:
    return Pipeline(services.settings, services.ledger, brevo or make_brevo(services))


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


def check_brevo_ready(services: Services) -> None:
    """Refuse to start when Brevo lacks an attribute or list the mapping needs.

    Raises :class:`BrevoSetupError` with what is missing and the command that fixes it. A Brevo
    outage at start is not a reason to refuse: events wait in the queue and retry.
    """
    from calendly_brevo.brevo.setup import require_setup
    from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError
    from calendly_brevo.logs import get_logger

    settings = services.settings
    settings.require_brevo()
    if settings.dry_run:
        return
    client = BrevoClient.from_settings(settings, make_limiter(services))
    try:
        require_setup(client, settings)
    except BrevoTransientError as exc:
        get_logger("calendly_brevo.worker").warning("brevo_setup_check_skipped", error=str(exc))
    except BrevoPermanentError as exc:
        # 401: bad key or IP not allow-listed. Say so now rather than dead-letter every event.
        raise BrevoSetupError(f"Brevo refused the set-up check: {exc}") from exc
