"""Queue maintenance on a timer: a killed worker's messages come back in bounded time.

Dramatiq's ``RedisBroker`` keeps what a worker fetched and has not acked in
``<ns>:__acks__.<worker id>.<queue>``; every broker command refreshes the worker's score in
``<ns>:__heartbeats__``. Requeueing the acks of a worker whose heartbeat is older than the
heartbeat timeout happens only in the ``do_maintenance`` branch of its ``dispatch.lua``, and
Dramatiq takes that branch by chance (``maintenance_chance`` per million commands). An idle
connector issues few commands, so a SIGKILLed worker's messages could wait for hours.

:class:`QueueMaintenance` takes that branch on purpose: every
``worker.maintenance_interval_seconds`` (and once at start-up) it calls Dramatiq's own
``dispatch`` script with ``do_maintenance=1`` and a command the script does not know
(``maintenance``), for each queue and its delay queue, so the requeue is exactly Dramatiq's
(same keys, same atomicity, dead-letter expiry included) rather than a copy that could drift
from it. The worker supervisor runs it in a thread, and so does ``calendly-brevo run`` when it
uses Redis. A ``SET NX PX`` lock held for most of one interval makes one process in the whole
deployment do it per interval, however many pods run; a pod that dies with the lock only delays
the next run by the lock's remaining time.

Bound: a dead worker's last heartbeat is at most the moment it died, so its messages are back
on the queue within ``heartbeat_timeout + maintenance_interval`` (75 s by default) of the kill,
at any traffic level, as long as one supervisor (or ``run``) is up.

Weak spots, said plainly: the script is Dramatiq's private ``_scripts["dispatch"]`` (a test
fails if a Dramatiq upgrade renames it); the script's dead-worker cleanup uses ``KEYS``, which
scans the keyspace, so each run costs O(keys in the Redis database) per dead worker seen (a few
ms on a small dedicated database; one run per interval for the whole deployment); each run
adds the maintenance id to the heartbeat set, which the next run removes once it is stale; and
a live worker that issues no command for the whole heartbeat timeout (all threads busy on
long Brevo waits with its prefetch full) counts as dead: its messages are run a second time,
which the event claim in Postgres turns into a no-op.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from dramatiq.brokers.redis import DEFAULT_DEAD_MESSAGE_TTL, _scripts

from calendly_brevo import metrics
from calendly_brevo.config import Settings
from calendly_brevo.logs import get_logger
from calendly_brevo.queue_health import (
    held_by_stale_workers,
    queues_of,
)
from calendly_brevo.queueing import NAMESPACE

log = get_logger("calendly_brevo.worker")

#: The "worker id" maintenance dispatches under (the script records a heartbeat for it).
MAINTENANCE_ID = "calendly-brevo-maintenance"
LOCK_KEY = "calendly_brevo:maintenance:lock"
#: Half Lua's default C stack (Dramatiq's own rule for unpacking ids in one call).
MAX_UNPACK = 3999
#: Share of an interval the lock is held: the next timer tick finds it free despite jitter.
LOCK_SHARE = 0.8


@dataclass(frozen=True)
class MaintenanceRun:
    """One pass: ``ran`` is false when another process held the lock."""

    ran: bool
    stale_before: int
    stale_after: int

    @property
    def requeued(self) -> int:
        return max(0, self.stale_before - self.stale_after)


class QueueMaintenance:
    """Dramatiq's dead-worker requeue on demand, once per interval for the whole deployment.

    ``clock`` (seconds) is the time the heartbeats are compared with; tests pass their own.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        heartbeat_timeout_ms: int,
        interval_seconds: float,
        namespace: str = NAMESPACE,
        queues: Iterable[str] = queues_of(),
        dead_message_ttl_ms: int = DEFAULT_DEAD_MESSAGE_TTL,
        lock_key: str = LOCK_KEY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.interval_seconds = interval_seconds
        self.namespace = namespace
        self.queues = tuple(queues)
        self.dead_message_ttl_ms = dead_message_ttl_ms
        self.lock_key = lock_key
        self._clock = clock
        self._token = uuid.uuid4().hex
        self._dispatch = client.register_script(_scripts["dispatch"])

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def acquire(self) -> bool:
        """The deployment-wide lock for this interval (``SET NX PX``); never released early."""
        ttl_ms = max(1, int(self.interval_seconds * LOCK_SHARE * 1000))
        return bool(self.client.set(self.lock_key, self._token, nx=True, px=ttl_ms))

    def stale_held(self) -> int:
        return held_by_stale_workers(
            self.client,
            heartbeat_timeout_ms=self.heartbeat_timeout_ms,
            namespace=self.namespace,
            queues=self.queues,
            now_ms=self._now_ms(),
        )

    def run_once(self) -> MaintenanceRun:
        """Requeue what dead workers hold, unless another process ran this interval."""
        before = self.stale_held()
        metrics.STALE_WORKER_MESSAGES.set(before)
        if not self.acquire():
            return MaintenanceRun(False, before, before)
        for queue in self.queues:
            self._dispatch(
                keys=[self.namespace],
                args=[
                    "maintenance",  # no command branch: heartbeat + maintenance only
                    self._now_ms(),
                    queue,
                    MAINTENANCE_ID,
                    self.heartbeat_timeout_ms,
                    self.dead_message_ttl_ms,
                    1,  # do_maintenance
                    MAX_UNPACK,
                ],
            )
        after = self.stale_held()
        metrics.STALE_WORKER_MESSAGES.set(after)
        result = MaintenanceRun(True, before, after)
        if result.requeued:
            log.warning("dead_worker_messages_requeued", messages=result.requeued)
        return result

    def run_forever(self, stop: Callable[[float], bool]) -> None:
        """Run now, then every interval until ``stop(seconds)`` (an ``Event.wait``) is true.

        A Redis error skips one pass (logged); the loop carries on."""
        while True:
            try:
                self.run_once()
            except (redis.RedisError, OSError) as exc:
                log.warning("queue_maintenance_failed", error=type(exc).__name__)
            if stop(self.interval_seconds):
                return


def maintenance_for(
    client: redis.Redis, *, heartbeat_timeout_seconds: float, interval_seconds: float
) -> QueueMaintenance:
    """The maintenance of this deployment's queue (``calendly`` and ``calendly.DQ``)."""
    return QueueMaintenance(
        client,
        heartbeat_timeout_ms=int(heartbeat_timeout_seconds * 1000),
        interval_seconds=interval_seconds,
    )


def maintain_queues(settings: Settings, stop: threading.Event) -> None:
    """The supervisor's (and ``run``'s) maintenance thread: at start, then every interval."""
    url = settings.storage.redis_url
    if not url:
        return
    # Timeouts: a half-open connection must cost one pass, not stop the timer for good.
    client = redis.Redis.from_url(
        url, health_check_interval=30, socket_timeout=10, socket_connect_timeout=5
    )
    try:
        maintenance_for(
            client,
            heartbeat_timeout_seconds=settings.worker.heartbeat_timeout_seconds,
            interval_seconds=settings.worker.maintenance_interval_seconds,
        ).run_forever(stop.wait)
    finally:
        client.close()
