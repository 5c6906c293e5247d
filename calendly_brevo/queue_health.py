"""Messages held by dead workers: what ``status``, ``doctor`` and the stale-worker gauge read.

Dramatiq's ``RedisBroker`` keeps what a worker fetched and has not acked in
``<ns>:__acks__.<worker id>.<queue>`` and each worker's last command time in
``<ns>:__heartbeats__``. A worker whose heartbeat is older than the heartbeat timeout is dead,
and its ack sets are what the next queue maintenance (:mod:`worker.maintenance`) requeues.
Read-only: this module only looks; the requeue is the worker's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from dramatiq.common import dq_name

from calendly_brevo.config import Settings
from calendly_brevo.queueing import NAMESPACE, QUEUE_NAME


def queues_of(names: Iterable[str] = (QUEUE_NAME,)) -> tuple[str, ...]:
    """Each queue and its delay queue (a dead worker can hold messages in both)."""
    return tuple(q for name in names for q in (name, dq_name(name)))


@dataclass(frozen=True)
class StaleHolders:
    """Workers whose heartbeat is older than the timeout and still hold messages."""

    messages: int
    workers: int
    oldest_seconds: float  # age of the oldest such heartbeat (0 when none)


def stale_holders(
    client: redis.Redis,
    *,
    heartbeat_timeout_ms: int,
    namespace: str = NAMESPACE,
    queues: Iterable[str] = queues_of(),
    now_ms: int | None = None,
) -> StaleHolders:
    """What the next maintenance run will requeue: the messages in the ack sets of workers
    whose heartbeat is older than the timeout (``calendly_brevo_stale_worker_messages``)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    stale: list[tuple[bytes | str, float]] = client.zrangebyscore(  # type: ignore[assignment]
        f"{namespace}:__heartbeats__", 0, now - heartbeat_timeout_ms, withscores=True
    )
    queue_names = tuple(queues)
    total = workers = 0
    oldest = 0.0
    for raw, score in stale:
        worker_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        held = sum(
            int(client.scard(f"{namespace}:__acks__.{worker_id}.{queue}")) for queue in queue_names
        )
        if held:
            total += held
            workers += 1
            oldest = max(oldest, (now - float(score)) / 1000)
    return StaleHolders(total, workers, oldest)


def held_by_stale_workers(
    client: redis.Redis,
    *,
    heartbeat_timeout_ms: int,
    namespace: str = NAMESPACE,
    queues: Iterable[str] = queues_of(),
    now_ms: int | None = None,
) -> int:
    """Messages held by workers whose heartbeat is stale (see :func:`stale_holders`)."""
    return stale_holders(
        client,
        heartbeat_timeout_ms=heartbeat_timeout_ms,
        namespace=namespace,
        queues=queues,
        now_ms=now_ms,
    ).messages


def describe_stale(holders: StaleHolders, settings: Settings) -> tuple[str, str | None]:
    """A line for ``status`` and ``doctor``: ``(detail, fix)``; ``fix`` is ``None`` when all is
    well. Past the bound, the maintenance is not running anywhere: that is the fix to make."""
    w = settings.worker
    bound = w.heartbeat_timeout_seconds + w.maintenance_interval_seconds
    if not holders.messages:
        return f"none (a dead worker's messages are requeued within {bound:.0f}s)", None
    detail = (
        f"{holders.messages} message(s) held by {holders.workers} worker(s) silent for "
        f"{holders.oldest_seconds:.0f}s"
    )
    if holders.oldest_seconds <= bound + w.maintenance_interval_seconds:
        return detail + f"; requeued within {bound:.0f}s of the kill", None
    return detail, (
        "no queue maintenance is running: start a worker supervisor (`calendly-brevo worker`) "
        "or `calendly-brevo run` with this REDIS_URL; it requeues them at start-up and every "
        "worker.maintenance_interval_seconds"
    )
