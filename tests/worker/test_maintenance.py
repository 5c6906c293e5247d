"""Queue maintenance on a timer: a dead worker's messages are requeued by Dramatiq's own script,
once per interval for the whole deployment, at any traffic level (real Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import httpx
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from calendly_brevo.queue_health import held_by_stale_workers
from calendly_brevo.queueing import NAMESPACE, QUEUE_NAME
from worker.maintenance import QueueMaintenance

HEARTBEAT_MS = 5_000


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def dead_worker_holding(client: redis.Redis, count: int) -> RedisBroker:
    """A broker that fetched ``count`` messages and then died (never acks, never beats)."""
    broker = RedisBroker(
        client=client, namespace=NAMESPACE, heartbeat_timeout=HEARTBEAT_MS, maintenance_chance=1
    )
    broker.declare_queue(QUEUE_NAME)

    @dramatiq.actor(broker=broker, queue_name=QUEUE_NAME, actor_name="process_event")
    def process_event(body: str) -> None:  # pragma: no cover - never run
        pass

    for i in range(count):
        process_event.send(f"event-{i}")
    fetched = broker.do_fetch(QUEUE_NAME, count)
    assert len(fetched) == count
    assert client.llen(f"{NAMESPACE}:{QUEUE_NAME}") == 0
    return broker


def maintenance(client: redis.Redis, clock: Clock, *, lock_key: str) -> QueueMaintenance:
    return QueueMaintenance(
        client,
        heartbeat_timeout_ms=HEARTBEAT_MS,
        interval_seconds=2.0,
        lock_key=lock_key,
        clock=clock,
    )


def test_messages_of_a_worker_with_a_stale_heartbeat_go_back_on_the_queue(
    client: redis.Redis,
) -> None:
    dead_worker_holding(client, 3)
    clock = Clock(time.time())
    m = maintenance(client, clock, lock_key="test:lock:a")
    fresh = m.run_once()
    assert fresh.ran and fresh.requeued == 0  # the heartbeat is still fresh: nothing moves
    assert client.llen(f"{NAMESPACE}:{QUEUE_NAME}") == 0

    clock.now += HEARTBEAT_MS / 1000 + 1
    assert m.stale_held() == 3
    client.delete("test:lock:a")
    done = m.run_once()
    assert done.ran and done.requeued == 3
    assert client.llen(f"{NAMESPACE}:{QUEUE_NAME}") == 3
    assert m.stale_held() == 0
    # Each message is back once, with its data still in the queue's hash.
    ids = client.lrange(f"{NAMESPACE}:{QUEUE_NAME}", 0, -1)
    assert len(set(ids)) == 3
    assert all(client.hexists(f"{NAMESPACE}:{QUEUE_NAME}.msgs", i) for i in ids)


def test_only_one_of_several_processes_runs_maintenance_per_interval(
    client: redis.Redis,
) -> None:
    dead_worker_holding(client, 2)
    clock = Clock(time.time() + HEARTBEAT_MS / 1000 + 1)
    pods = [maintenance(client, clock, lock_key="test:lock:b") for _ in range(4)]
    runs = [pod.run_once() for pod in pods]
    assert [r.ran for r in runs] == [True, False, False, False]
    assert sum(r.requeued for r in runs) == 2
    assert client.llen(f"{NAMESPACE}:{QUEUE_NAME}") == 2
    # The lock lapses within the interval, so the next tick runs again.
    ttl_ms = client.pttl("test:lock:b")
    assert 0 < ttl_ms <= 2_000 * 0.8


def test_the_timer_requeues_without_any_traffic_and_stops_when_asked(
    client: redis.Redis,
) -> None:
    broker = dead_worker_holding(client, 2)
    # The dead worker's last heartbeat is pushed into the past: no other command runs.
    client.zadd(f"{NAMESPACE}:__heartbeats__", {broker.broker_id: 0})
    m = QueueMaintenance(
        client, heartbeat_timeout_ms=HEARTBEAT_MS, interval_seconds=0.5, lock_key="test:lock:c"
    )
    assert held_by_stale_workers(client, heartbeat_timeout_ms=HEARTBEAT_MS) == 2
    stop = threading.Event()
    thread = threading.Thread(target=m.run_forever, args=(stop.wait,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while client.llen(f"{NAMESPACE}:{QUEUE_NAME}") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert client.llen(f"{NAMESPACE}:{QUEUE_NAME}") == 2
    # The dead worker is forgotten once nothing of it is left.
    assert client.zscore(f"{NAMESPACE}:__heartbeats__", broker.broker_id) is None


def test_a_redis_error_skips_one_pass_and_the_timer_carries_on(redis_url: str) -> None:
    class Flaky(redis.Redis):
        fails = 1

        def set(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            if Flaky.fails:
                Flaky.fails -= 1
                raise redis.ConnectionError("down")
            return super().set(*args, **kwargs)  # type: ignore[arg-type]

    client = Flaky.from_url(redis_url)
    m = QueueMaintenance(
        client, heartbeat_timeout_ms=HEARTBEAT_MS, interval_seconds=0.5, lock_key="test:lock:d"
    )
    ticks: list[float] = []

    def stop(seconds: float) -> bool:
        ticks.append(seconds)
        return len(ticks) >= 2

    m.run_forever(stop)
    assert ticks == [0.5, 0.5]
    assert client.get("test:lock:d") is not None  # the second pass ran
    client.close()


def test_doctor_fails_only_when_a_dead_workers_messages_outlive_the_bound(
    client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    from calendly_brevo.doctor import DoctorContext, check_dead_workers
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, REDIS_URL=redis_url)
    ctx = DoctorContext(
        settings,
        httpx.Client(),
        engine_factory=lambda: None,  # type: ignore[arg-type,return-value]
        sessions_factory=lambda: None,  # type: ignore[arg-type,return-value]
        redis_ping=lambda: True,
        redis_client=lambda: client,
    )
    assert check_dead_workers(ctx).status == "OK"
    broker = dead_worker_holding(client, 3)
    client.zadd(f"{NAMESPACE}:__heartbeats__", {broker.broker_id: (time.time() - 65) * 1000})
    due = check_dead_workers(ctx)
    assert due.status == "WARN" and due.detail.startswith("3 message(s) held by 1 worker(s)")
    client.zadd(f"{NAMESPACE}:__heartbeats__", {broker.broker_id: (time.time() - 300) * 1000})
    overdue = check_dead_workers(ctx)
    assert overdue.status == "FAIL"
    assert overdue.fix and "calendly-brevo worker" in overdue.fix


def test_the_gauge_refresher_counts_a_dead_workers_messages_even_without_maintenance(
    client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    from calendly_brevo import metrics
    from calendly_brevo.bootstrap import Services
    from calendly_brevo.db.migrate import upgrade
    from tests.conftest import make_settings
    from worker.gauges import GaugeRefresher

    broker = dead_worker_holding(client, 2)
    client.zadd(f"{NAMESPACE}:__heartbeats__", {broker.broker_id: (time.time() - 600) * 1000})
    services = Services(make_settings(tmp_path, REDIS_URL=redis_url))
    try:
        upgrade(services.engine)
        GaugeRefresher(services).refresh()
    finally:
        services.close()
    assert metrics.STALE_WORKER_MESSAGES._value.get() == 2
