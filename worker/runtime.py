"""Wire a worker process: services → ledger, rate limiter, Brevo client → pipeline → actors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from dramatiq.middleware import Middleware

from calendly_brevo.bootstrap import Services
from calendly_brevo.brevo.batching import Crowd
from calendly_brevo.brevo.client import BrevoClient, make_http_client
from calendly_brevo.brevo.coalesced import CoalescingBrevo
from calendly_brevo.errors import BrevoSetupError, RateLimited
from calendly_brevo.ledger.postgres import PostgresLedger
from calendly_brevo.ratelimit import TokenBucket, make_token_bucket
from worker.actors import declare_actors
from worker.broker import make_broker
from worker.group import GroupPass
from worker.pipeline import Pipeline


def make_limiter(services: Services) -> TokenBucket:
    """The process's one bucket: Redis-backed (shared by every worker) or in memory (embedded)."""
    cached: TokenBucket | None = getattr(services, "_limiter", None)
    if cached is not None:
        return cached
    settings = services.settings
    limiter = make_token_bucket(
        settings.brevo,
        services.redis if settings.storage.redis_url else None,
        extra={LOOKUPS: settings.brevo.lookup_bucket()},
    )
    services._limiter = limiter  # type: ignore[attr-defined]
    return limiter


def make_client(services: Services, limiter: TokenBucket | None = None) -> BrevoClient:
    """The worker's Brevo client, on the process's bucket (or ``limiter``: the background's
    :class:`~calendly_brevo.ratelimit.spare.SpareBucket`)."""
    settings = services.settings
    # ``brevo.dry_run: true`` keeps the client dry even with a key (it logs, never sends).
    api_key = None if settings.brevo.runs_dry else settings.brevo.api_key
    key = api_key.get_secret_value() if api_key else None
    return BrevoClient(
        make_http_client(settings),
        key or None,
        limiter or make_limiter(services),
        sms_fallback_attribute=settings.brevo.sms_fallback_attribute,
    )


def make_brevo(services: Services, crowd: Crowd | None = None) -> BrevoClient | CoalescingBrevo:
    """The process's Brevo port: coalescing into the bulk endpoints unless ``brevo.batch`` is
    off or the run is dry (nothing is sent, so nothing to batch)."""
    settings = services.settings
    client = make_client(services)
    if client.dry_run or not settings.brevo.batch.enabled:
        return client
    # A waiting call trusts its batch's sender this long: the bucket's wait plus the request.
    patience = client.max_wait + settings.brevo.timeout_seconds + 5.0
    return CoalescingBrevo(client, settings.brevo.batch, patience=patience, crowd=crowd)


#: The bucket of in-doubt lookups: a share of "other" (each lookup still takes an "other" token).
LOOKUPS = "lookups"
#: A lookup waits this long for its token at most; longer means the share is spent.
LOOKUP_MAX_WAIT = 1.0


class BucketLookupBudget:
    """:class:`~calendly_brevo.event_send.LookupBudget` on the shared bucket: a token now, or
    none."""

    def __init__(self, limiter: TokenBucket) -> None:
        self.limiter = limiter

    def take(self) -> bool:
        try:
            self.limiter.acquire(LOOKUPS, LOOKUP_MAX_WAIT)
        except RateLimited:
            return False
        return True


def build_pipeline(
    services: Services, brevo: BrevoClient | CoalescingBrevo | None = None
) -> Pipeline:
    crowd = Crowd()  # the process's attempts in progress: a batch leaves once all wait
    port = brevo or make_brevo(services, crowd)
    pipeline = Pipeline(
        services.settings,
        services.ledger,
        port,
        BucketLookupBudget(make_limiter(services)),
        crowd=crowd,
    )
    pipeline.group = make_group(services, pipeline, port)
    return pipeline


def make_group(
    services: Services, pipeline: Pipeline, port: BrevoClient | CoalescingBrevo
) -> GroupPass | None:
    """The process's group pass (:mod:`worker.group`), where it applies: the Postgres ledger,
    coalescing on (so not a dry run), no live imports, batches of 2 or more
    (``worker.group_max``) and ``worker.batch_threads`` to run it."""
    settings = services.settings
    ledger = services.ledger
    if not isinstance(port, CoalescingBrevo) or not isinstance(ledger, PostgresLedger):
        return None
    w = settings.worker
    if w.group_max < 2 or w.batch_threads < 1 or settings.brevo.batch.live_imports:
        return None
    # Not bounded by worker.threads: a batch's fixed cost (its statements, its requests) is
    # most of a small one's. A process killed mid-batch leaves its events in doubt, but their
    # lookups share what they read (calendly_brevo/event_send.py, BatchScans): about one
    # lookup per event name a batch, not one per event.
    batch = w.group_max
    return GroupPass(pipeline, ledger, port.client, max_items=batch)


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
    actor = declare_actors(broker, services.settings.worker, lambda: pipe)
    return WorkerRuntime(broker, pipe, actor)


def check_brevo_ready(services: Services, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """Refuse to start when Brevo lacks an attribute or list the mapping needs.

    Raises :class:`BrevoSetupError` with what is missing and the command that fixes it. A
    transient answer (5xx, 429, timeout) is waited out for ``brevo.startup_wait_seconds``
    (:mod:`calendly_brevo.brevo.patience`); past that, a Brevo outage at start is still not a
    reason to refuse: events wait in the queue and retry.
    """
    from calendly_brevo.brevo.patience import wait_out
    from calendly_brevo.brevo.setup import require_setup
    from calendly_brevo.errors import BrevoPermanentError, TransientError
    from calendly_brevo.logs import get_logger

    settings = services.settings
    settings.require_brevo()
    if settings.dry_run:
        return
    client = BrevoClient.from_settings(settings, make_limiter(services))
    try:
        wait_out(
            lambda: require_setup(client, settings),
            what="Brevo's answer to the set-up check (attributes and lists)",
            budget_seconds=settings.brevo.startup_wait_seconds,
            sleep=sleep,
        )
    except BrevoPermanentError as exc:
        # 401: bad key or IP not allow-listed. Say so now rather than dead-letter every event.
        raise BrevoSetupError(f"Brevo refused the set-up check: {exc}") from exc
    except TransientError as exc:
        get_logger("calendly_brevo.worker").warning("brevo_setup_check_skipped", error=str(exc))
    finally:
        client.close()
