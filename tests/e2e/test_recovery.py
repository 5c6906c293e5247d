"""Recovery in bounded time (issue 18): what a SIGKILLed worker held is applied again within
``worker.heartbeat_timeout_seconds + worker.maintenance_interval_seconds`` of the kill, with no
traffic at all after it, and every effect happens once.

Short timeouts keep the tests quick (heartbeat 5 s, maintenance every 2 s), and
``maintenance_chance`` is at its minimum so Dramatiq's chance maintenance cannot be what
requeues: the timer must. Measured times are printed (``-s``) for the report.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis

from calendly_brevo.config import load_settings
from calendly_brevo.queueing import QUEUE_NAME, SqliteEnqueuer, SqliteQueue, sqlite_queue_path
from tests.conftest import SIGNING_KEY
from tests.e2e.procs import Proc, free_port, run_cli, wait_for, wait_http
from tests.e2e.stream import (
    STREAM_LISTS,
    build_stream,
    enqueue_all,
    expected,
    production_env,
    setup_fake,
    unacked,
)
from tests.e2e.test_shutdown import (
    BREVO_KEY,
    RAISED_LIMITS,
    brevo_events,
    claims,
    start_worker,
)
from tests.fakes.brevo import running_fake_brevo

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

HEARTBEAT = 5.0
INTERVAL = 2.0
#: Start-up of the fresh worker, the fetch after the requeue, and a busy 2-core machine.
MARGIN = 8.0
WORKER_SECTION = f"""
worker:
  shutdown_timeout_seconds: 5
  min_backoff_seconds: 0.5
  max_backoff_seconds: 2
  heartbeat_timeout_seconds: {HEARTBEAT}
  maintenance_interval_seconds: {INTERVAL}
  maintenance_chance: 1
"""


def ack_sets(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter("dramatiq:__acks__.*"))


def test_a_killed_workers_messages_are_applied_within_the_bound_with_no_traffic(
    tmp_path: Path, postgres_url: str, own_redis_url: str
) -> None:
    stream = build_stream(contacts=8, groups=0)
    limits = {"contacts": (40, 1.0), "events": (40, 1.0)}
    with running_fake_brevo(api_key=BREVO_KEY, lists=STREAM_LISTS, limits=limits) as fake:
        setup_fake(fake)
        fake.inject("slow", delay=1.0)  # every call is slow: the worker holds what it fetched
        env = production_env(
            tmp_path,
            brevo_url=fake.base_url,
            brevo_key=BREVO_KEY,
            postgres_url=postgres_url,
            redis_url=own_redis_url,
            signing_key=SIGNING_KEY,
            brevo=RAISED_LIMITS,
            sections=WORKER_SECTION,
        ) | {"METRICS_PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "p1")}
        want = expected(stream.logical, load_settings(None, env=env))
        assert run_cli(["migrate"], env).returncode == 0
        client = redis.Redis.from_url(own_redis_url)
        from calendly_brevo.queueing import RedisEnqueuer

        enqueuer = RedisEnqueuer(client)
        enqueue_all(enqueuer, stream.deliveries)

        first = start_worker(env, tmp_path / "worker1.log", threads=2)
        try:
            wait_for(lambda: unacked(client) >= 3, timeout=60, what="messages held by the worker")
            wait_for(lambda: len(fake.state.requests) > 0, timeout=30, what="Brevo calls")
        finally:
            first.kill()  # SIGKILL, supervisor and worker process: the pod is gone
            first.stop()
        killed_at = time.monotonic()
        dead = ack_sets(client)  # only the dead worker's so far
        holding = unacked(client)
        assert holding >= 3
        fake.clear_faults()
        # No traffic from here on: nothing is enqueued, and the only broker commands are the
        # fresh worker's own fetches.
        env2 = env | {
            "METRICS_PORT": str(free_port()),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "p2"),
        }
        second: Proc = start_worker(env2, tmp_path / "worker2.log", threads=2)
        try:
            wait_for(
                lambda: sum(int(client.scard(k)) for k in dead) == 0,
                timeout=HEARTBEAT + INTERVAL + 30,
                interval=0.2,
                what="the dead worker's messages requeued",
            )
            requeued_after = time.monotonic() - killed_at
            wait_for(
                lambda: claims(postgres_url) == Counter({"applied": len(stream.logical)}),
                timeout=60,
                interval=0.2,
                what="every logical event applied",
            )
            applied_after = time.monotonic() - killed_at
            # Exported by the supervisor, and 0 once nothing is left to requeue.
            assert stale_gauge(env2["METRICS_PORT"]) == 0
        finally:
            second.stop()
        print(
            f"\nrecovery (redis): {holding} held, requeued after {requeued_after:.1f}s, "
            f"all applied after {applied_after:.1f}s (bound {HEARTBEAT + INTERVAL:.0f}s + margin)"
        )
        assert requeued_after <= HEARTBEAT + INTERVAL + MARGIN, second.tail()
        assert applied_after <= HEARTBEAT + INTERVAL + MARGIN, second.tail()
        assert "dead_worker_messages_requeued" in second.log()
        assert brevo_events(fake) == want.events  # each custom event once
        assert fake.call(lambda: list(fake.state.violations)) == []


def stale_gauge(port: str) -> float:
    """``calendly_brevo_stale_worker_messages`` on the worker supervisor's ``/metrics``."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("calendly_brevo_stale_worker_messages "):
            return float(line.split()[1])
    return -1.0


def embedded_env(tmp_path: Path, brevo_url: str, port: int) -> dict[str, str]:
    env = production_env(
        tmp_path,
        brevo_url=brevo_url,
        brevo_key=BREVO_KEY,
        postgres_url="",
        redis_url="",
        signing_key=SIGNING_KEY,
        brevo=RAISED_LIMITS,
        sections=WORKER_SECTION,
    )
    return env | {"PORT": str(port)}


def embedded_claims(data_dir: Path) -> Counter[str]:
    with sqlite3.connect(data_dir / "calendly-brevo.db") as conn:
        rows = conn.execute("SELECT status, count(*) FROM processed_events GROUP BY status")
        return Counter({row[0]: int(row[1]) for row in rows})


def test_a_killed_embedded_run_applies_what_it_held_once_it_restarts(tmp_path: Path) -> None:
    stream = build_stream(contacts=8, groups=0)
    data_dir = tmp_path / "data"
    limits = {"contacts": (40, 1.0), "events": (40, 1.0)}
    with running_fake_brevo(api_key=BREVO_KEY, lists=STREAM_LISTS, limits=limits) as fake:
        setup_fake(fake)
        fake.inject("slow", delay=1.0)
        port = free_port()
        env = embedded_env(tmp_path, fake.base_url, port)
        want = expected(stream.logical, load_settings(None, env=env))
        first = Proc(["run"], env, tmp_path / "run1.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", first, timeout=60)
            queue = SqliteQueue(sqlite_queue_path(data_dir))
            enqueuer = SqliteEnqueuer(queue)
            enqueue_all(enqueuer, stream.deliveries)
            wait_for(
                lambda: queue.count(QUEUE_NAME, "taken") >= 2,
                timeout=60,
                what="messages taken by run",
            )
        finally:
            first.kill()
            first.stop()
        killed_at = time.monotonic()
        holding = queue.count(QUEUE_NAME, "taken")
        assert holding >= 2
        queue.close()
        fake.clear_faults()
        second = Proc(["run"], env, tmp_path / "run2.log")
        try:
            wait_for(
                lambda: embedded_claims(data_dir) == Counter({"applied": len(stream.logical)}),
                timeout=90,
                interval=0.2,
                what="every logical event applied after the restart",
            )
            applied_after = time.monotonic() - killed_at
        finally:
            second.stop()
        print(
            f"\nrecovery (embedded): {holding} held, all applied {applied_after:.1f}s "
            "after the kill (restarted at once)"
        )
        # The restart releases what the dead process held at once: no heartbeat to wait for.
        assert applied_after <= MARGIN + 10, second.tail()
        assert brevo_events(fake) == want.events
        assert fake.call(lambda: list(fake.state.violations)) == []


def test_run_takes_webhooks_while_it_waits_out_502s_from_brevo_and_then_applies_them(
    tmp_path: Path,
) -> None:
    stream = build_stream(contacts=2, groups=0)
    data_dir = tmp_path / "data"
    with running_fake_brevo(api_key=BREVO_KEY, lists=STREAM_LISTS) as fake:
        setup_fake(fake)
        fake.inject("5xx", status=502, path=r"/contacts/(attributes|lists)$", count=3)
        port = free_port()
        env = embedded_env(tmp_path, fake.base_url, port)
        proc = Proc(["run"], env, tmp_path / "run.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=60)
            enqueuer = SqliteEnqueuer(SqliteQueue(sqlite_queue_path(data_dir)))
            enqueue_all(enqueuer, stream.logical)
            wait_for(
                lambda: embedded_claims(data_dir) == Counter({"applied": len(stream.logical)}),
                timeout=60,
                interval=0.2,
                what="every event applied once Brevo answered",
            )
            assert proc.alive()
        finally:
            proc.stop()
        assert proc.log().count('"brevo_waiting"') == 3
        assert "not ready for this mapping" not in proc.log()
