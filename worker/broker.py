"""The broker and its middleware, composed in one place. Actors are declared on what this returns.

Middleware, and why each is (or is not) here:

- ``TimeLimit``: an event stuck for minutes (a hung socket) is interrupted and retried.
- ``ShutdownNotifications``: SIGTERM interrupts long waits so shutdown stays within its budget.
- ``CurrentMessage``: the actor reads its retry count to know when an attempt is the last.
- ``DurableRetries`` (Dramatiq's ``Retries`` whose re-enqueue survives a Redis outage):
  transient failures come back as ``dramatiq.Retry(delay=…)`` with our own backoff. Its
  ``max_retries`` is a backstop far above ``worker.max_retries``: the pipeline dead-letters on
  the last attempt itself, and this only matters if even that write fails (the database is
  down), in which case the message keeps retrying instead of being dropped.
- ``AgeLimit`` is left out on purpose: it drops old messages, and nothing accepted may be dropped.
- Dramatiq's ``Prometheus`` middleware is added by the multi-process worker (it needs
  prometheus-client's multiprocess mode, which the embedded single process does not use).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    CurrentMessage,
    Middleware,
    ShutdownNotifications,
    TimeLimit,
)

from calendly_brevo.config import Settings
from calendly_brevo.queueing import NAMESPACE, SqliteQueue, sqlite_queue_path
from worker.middleware.durable_retries import DurableRetries
from worker.middleware.log_context import LogContext
from worker.sqlite_broker import SqliteBroker

RETRY_BACKSTOP = 1000


def default_middleware(settings: Settings) -> list[Middleware]:
    w = settings.worker
    return [
        TimeLimit(time_limit=5 * 60 * 1000),
        ShutdownNotifications(),
        CurrentMessage(),
        DurableRetries(
            max_retries=w.max_retries + RETRY_BACKSTOP,
            min_backoff=int(w.min_backoff_seconds * 1000),
            max_backoff=int(w.max_backoff_seconds * 1000),
        ),
        LogContext(),
    ]


def make_broker(
    settings: Settings,
    *,
    extra: list[Middleware] | None = None,
    heartbeat_timeout_ms: int | None = None,
) -> dramatiq.Broker:
    """Redis when ``REDIS_URL`` is set, else the durable SQLite queue in the data dir.

    A killed worker's unacked messages come back once its heartbeat is
    ``worker.heartbeat_timeout_seconds`` old, at the next queue maintenance: by chance
    (``worker.maintenance_chance`` per million commands) and on a timer
    (:mod:`worker.maintenance`, every ``worker.maintenance_interval_seconds``)."""
    middleware = default_middleware(settings) + list(extra or [])
    broker: dramatiq.Broker
    if settings.storage.redis_url:
        if heartbeat_timeout_ms is None:
            heartbeat_timeout_ms = int(settings.worker.heartbeat_timeout_seconds * 1000)
        broker = RedisBroker(
            url=settings.storage.redis_url,
            namespace=NAMESPACE,
            middleware=middleware,
            heartbeat_timeout=heartbeat_timeout_ms,
            maintenance_chance=settings.worker.maintenance_chance,
        )
    else:
        broker = SqliteBroker(
            SqliteQueue(sqlite_queue_path(settings.storage.data_dir)), middleware=middleware
        )
    return broker
