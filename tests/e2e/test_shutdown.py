"""Graceful shutdown of the production processes (SIGTERM, as Kubernetes sends it).

- The receiver stops accepting, finishes the requests it is handling, answers them, then closes
  the queue: a client sees a 2xx or a connection error, never a 5xx, and every 202 is queued.
- A worker stops taking messages, finishes what it holds within
  ``worker.shutdown_timeout_seconds`` and exits 0; what it fetched but did not start, and what
  is still running when the budget runs out, is back on the queue when it exits (not one
  heartbeat timeout later). Another worker then applies all of it exactly once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from calendly_brevo.config import load_settings
from calendly_brevo.queueing import RedisEnqueuer, queue_key
from tests.conftest import SIGNING_KEY
from tests.e2e.procs import Proc, free_port, run_cli, wait_for, wait_http
from tests.e2e.stream import (
    STREAM_LISTS,
    build_stream,
    enqueue_all,
    expected,
    production_env,
    queued,
    setup_fake,
    signed_post,
    unacked,
)
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BREVO_KEY = "xkeysib-shutdown-0123456789"
#: What the supervisor and interpreter teardown may add to the shutdown budget on a busy box.
SLACK = 4.0
RAISED_LIMITS = """
rate_limits:
  contacts: {rate: 40, burst: 40}
  events: {rate: 40, burst: 40}
"""


# --- receiver -----------------------------------------------------------------------------------
class HoldingProxy:
    """A TCP proxy to Redis that can hold the commands it forwards (``hold`` set): requests
    that reach the receiver then stay in its handler, waiting on the enqueue, for as long as the
    test likes. That is what "in flight" means for a receiver whose handler is one Redis round
    trip."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.hold = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, gated: bool) -> None:
        try:
            while data := src.recv(65536):
                while gated and self.hold.is_set():
                    time.sleep(0.005)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_receiver_on_sigterm_finishes_in_flight_requests_and_answers_no_5xx(
    tmp_path: Path, own_redis_url: str
) -> None:
    """aiohttp stops listening, lets running handlers finish within
    ``server.shutdown_timeout_seconds``, then closes the queue. (A request whose body is still
    arriving when SIGTERM comes is dropped, not answered: aiohttp stops reading closing
    connections. The sender sees a connection error and Calendly retries it.)"""
    stream = build_stream(contacts=30, groups=0)
    redis_target = urlsplit(own_redis_url)
    proxy = HoldingProxy((redis_target.hostname or "127.0.0.1", redis_target.port or 6379))
    port = free_port()
    env = production_env(
        tmp_path,
        brevo_url="http://127.0.0.1:9/v3",
        brevo_key=BREVO_KEY,
        postgres_url="",
        redis_url=f"redis://127.0.0.1:{proxy.port}{redis_target.path}",
        signing_key=SIGNING_KEY,
        sections="\nserver:\n  shutdown_timeout_seconds: 5\n",
    ) | {"PORT": str(port), "DATABASE_URL": ""}
    url = f"http://127.0.0.1:{port}/webhooks/calendly"
    receiver = Proc(["receiver"], env, tmp_path / "receiver.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", receiver, timeout=60)
        sent: list[tuple[float, int | str]] = []  # (when the request started, outcome)
        lock = threading.Lock()
        stop_sending = threading.Event()

        def sender(offset: int) -> None:
            with httpx.Client(timeout=15) as client:
                i = offset
                while not stop_sending.is_set():
                    doc = stream.deliveries[i % len(stream.deliveries)]
                    began = time.monotonic()
                    try:
                        r = signed_post(client, url, doc, SIGNING_KEY)
                        got: int | str = r.status_code
                        if r.status_code == 202:
                            got = f"202:{r.json()['message_id']}"
                    except httpx.TransportError:
                        got = "error"
                    with lock:
                        sent.append((began, got))
                    i += 4
                    time.sleep(0.02)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        proxy.hold.set()  # Redis "stalls": the next requests wait in the handler
        held_at = time.monotonic()
        time.sleep(0.4)
        receiver.signal(signal.SIGTERM)
        term_at = time.monotonic()
        time.sleep(0.8)  # held 1.2 s in all: under the receiver's 2 s Redis timeout
        proxy.hold.clear()
        time.sleep(1.5)  # keep knocking while it drains
        stop_sending.set()
        for t in threads:
            t.join(30)
        receiver.popen.wait(5 + SLACK)
        exited_after = time.monotonic() - term_at
        assert receiver.popen.returncode == 0, receiver.log()[-3000:]
        assert exited_after < 5 + SLACK

        outcomes = Counter("202" if str(o).startswith("202:") else o for _, o in sent)
        assert set(outcomes) <= {"202", "error"}, outcomes  # never a 5xx, never a 4xx
        # The requests that were waiting on Redis when SIGTERM came were answered 202.
        in_flight = [o for began, o in sent if held_at <= began < term_at]
        assert in_flight and all(str(o).startswith("202:") for o in in_flight), in_flight
        # Later requests were refused, not half-served.
        assert outcomes["error"] > 0, outcomes
        # Every 202 is on the queue: in the message hash and in the list.
        accepted = {str(o)[4:] for _, o in sent if str(o).startswith("202:")}
        client = redis.Redis.from_url(own_redis_url, decode_responses=True)
        listed = set(client.lrange(queue_key(), 0, -1))
        stored = set(client.hkeys(queue_key() + ".msgs"))
        assert accepted == listed == stored
    finally:
        receiver.stop()
        proxy.close()


# --- worker -------------------------------------------------------------------------------------
def worker_env(
    tmp_path: Path, fake: FakeBrevoServer, postgres_url: str, redis_url: str, **extra: str
) -> dict[str, str]:
    sections = "\n".join(
        [
            "worker:",
            f"  shutdown_timeout_seconds: {extra.pop('shutdown', '5')}",
            "  min_backoff_seconds: 0.5",
            "  max_backoff_seconds: 2",
        ]
    )
    return production_env(
        tmp_path,
        brevo_url=fake.base_url,
        brevo_key=BREVO_KEY,
        postgres_url=postgres_url,
        redis_url=redis_url,
        signing_key=SIGNING_KEY,
        brevo=extra.pop("brevo", ""),
        sections="\n" + sections + "\n",
    ) | {"METRICS_PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}


def start_worker(env: dict[str, str], log: Path, threads: int) -> Proc:
    proc = Proc(["worker", "--processes", "1", "--threads", str(threads)], env, log)
    wait_http(f"http://127.0.0.1:{env['METRICS_PORT']}/healthz", proc, timeout=60)
    wait_for(lambda: "worker_started" in proc.log(), timeout=60, what="worker consuming")
    return proc


def stop_and_time(proc: Proc, budget: float) -> float:
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    proc.popen.wait(budget + SLACK + 10)
    took = time.monotonic() - started
    log = proc.log()
    assert proc.popen.returncode == 0, log[-3000:]
    assert "worker_stopping" in log and "worker_stopped" in log, log[-3000:]
    return took


def claims(postgres_url: str) -> Counter[str]:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT status, count(*) FROM processed_events GROUP BY status")
            ).all()
    finally:
        engine.dispose()
    return Counter({row[0]: int(row[1]) for row in rows})


def brevo_events(fake: FakeBrevoServer) -> Counter[tuple[str, str]]:
    return fake.call(
        lambda: Counter(
            (e.event_name, str(e.identifiers.get("email_id"))) for e in fake.state.events
        )
    )


def test_worker_on_sigterm_mid_load_stops_within_its_budget_and_loses_nothing(
    tmp_path: Path, postgres_url: str, own_redis_url: str
) -> None:
    stream = build_stream(contacts=18, groups=1, group_size=4)
    limits = {"contacts": (40, 1.0), "events": (40, 1.0)}
    with running_fake_brevo(api_key=BREVO_KEY, lists=STREAM_LISTS, limits=limits) as fake:
        setup_fake(fake)
        fake.inject("slow", delay=0.1)  # every Brevo call takes a while: work is in flight
        env = worker_env(
            tmp_path,
            fake,
            postgres_url,
            own_redis_url,
            shutdown="5",
            brevo=RAISED_LIMITS,
        )
        want = expected(stream.logical, load_settings(None, env=env))
        assert run_cli(["migrate"], env).returncode == 0
        client = redis.Redis.from_url(own_redis_url)
        enqueuer = RedisEnqueuer(client)
        enqueue_all(enqueuer, stream.deliveries)

        first = start_worker(env, tmp_path / "worker1.log", threads=4)
        try:
            wait_for(lambda: sum(brevo_events(fake).values()) >= 8, timeout=60, what="progress")
            took = stop_and_time(first, 5)
        finally:
            first.stop()
        assert took < 5 + SLACK, f"stopped in {took:.1f}s"
        # Whatever it fetched and did not finish is back on the queue now, not after the
        # heartbeat timeout; and what it was running when SIGTERM came, it finished.
        assert unacked(client) == 0
        assert queued(client) > 0
        assert claims(postgres_url)["processing"] == 0

        second = start_worker(env, tmp_path / "worker2.log", threads=4)
        try:
            wait_for(
                lambda: claims(postgres_url) == Counter({"applied": len(stream.logical)}),
                timeout=90,
                interval=0.5,
                what="every logical event applied",
            )
            wait_for(lambda: queued(client) == 0 and unacked(client) == 0, timeout=15)
        finally:
            second.stop()
        assert brevo_events(fake) == want.events
        assert fake.call(lambda: list(fake.state.violations)) == []


def test_a_message_still_running_when_the_budget_runs_out_is_requeued_at_exit(
    tmp_path: Path, postgres_url: str, own_redis_url: str
) -> None:
    stream = build_stream(contacts=1, groups=0)
    assert len(stream.logical) == 1
    with running_fake_brevo(api_key=BREVO_KEY, lists=STREAM_LISTS) as fake:
        setup_fake(fake)
        # Brevo holds the custom event for 30 s and drops it; our client waits up to 20 s, so
        # the message is still running when the 2 s shutdown budget is spent.
        fake.inject("timeout", path=r"/events$", count=1, delay=30.0)
        env = worker_env(
            tmp_path,
            fake,
            postgres_url,
            own_redis_url,
            shutdown="2",
            brevo="timeout_seconds: 20\n",
        )
        want = expected(stream.logical, load_settings(None, env=env))
        assert run_cli(["migrate"], env).returncode == 0
        client = redis.Redis.from_url(own_redis_url)
        RedisEnqueuer(client).enqueue(
            json.dumps(stream.logical[0]), received_at=time.time(), source="webhook"
        )
        first = start_worker(env, tmp_path / "worker1.log", threads=2)
        try:
            wait_for(lambda: fake.call(lambda: len(fake.state.faults)) == 1, timeout=30)
            took = stop_and_time(first, 2)
        finally:
            first.stop()
        assert took < 2 + SLACK, f"stopped in {took:.1f}s"
        assert unacked(client) == 0, "the running message is still held by the dead worker"
        assert queued(client) == 1
        assert claims(postgres_url) == Counter({"processing": 1})

        second = start_worker(env, tmp_path / "worker2.log", threads=2)
        try:
            wait_for(
                lambda: claims(postgres_url) == Counter({"applied": 1}),
                timeout=30,
                what="the requeued event applied",
            )
        finally:
            second.stop()
        assert brevo_events(fake) == want.events
        upserts = fake.call(
            lambda: [
                r
                for r in fake.state.requests
                if r.method == "POST" and r.path.endswith("/contacts")
            ]
        )
        assert len(upserts) == 1  # recorded as done before the stall: not sent again
