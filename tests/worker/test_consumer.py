"""The worker's consumer (``worker/consumer.py``) on real Redis and Postgres, against the fake
Brevo: Dramatiq's worker whose batch threads hand the group pass what is on the queue.

- the messages waiting on the queue go through the group pass in batches, every custom event
  is sent once, and every message is acked (nothing left in the queue or in the worker's ack
  set), each after its effects were recorded;
- a retry and a routing form go to the one-event path's threads and end there;
- a batch whose Brevo request failed is retried by Dramatiq, message by message, and nothing
  fires twice;
- the same on the SQLite queue (a Postgres ledger without Redis), its acks one by one;
- the batched ack is Dramatiq's own: an acked message is gone, a failed one is in the
  dead-letter queue.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from calendly_brevo.bootstrap import Services
from calendly_brevo.events import parse_envelope, read_event
from calendly_brevo.queueing import ACTOR_NAME, QUEUE_NAME, build_message
from tests import payloads
from tests.fakes.brevo import FakeBrevoServer
from tests.worker.test_batched_pipeline import fake, metric, requests, sent_ids
from tests.worker.test_group_pass import groups, people, unlimited
from worker.consumer import BatchWorker, ack_all, make_worker
from worker.runtime import WorkerRuntime, build_runtime
from worker.sqlite_broker import SqliteBroker

pytestmark = pytest.mark.integration
__all__ = ["fake"]


@pytest.fixture(params=["redis", "sqlite"])
def runtime(
    request: pytest.FixtureRequest,
    fake: FakeBrevoServer,
    postgres_url: str,
    redis_url: str,
    tmp_path: Any,
) -> Iterator[WorkerRuntime]:
    """A worker process's runtime on Postgres, with Redis or (a Postgres ledger without Redis)
    the SQLite queue."""
    queue = redis_url if request.param == "redis" else None
    settings = payloads.settings(
        brevo=unlimited(fake),
        storage={"database_url": postgres_url, "redis_url": queue, "data_dir": str(tmp_path)},
        worker={"threads": 8, "batch_threads": 2, "group_max": 16, "min_backoff_seconds": 0.05},
    )
    services = Services(settings)
    from calendly_brevo.db.migrate import upgrade

    upgrade(services.engine)
    rt = build_runtime(services)
    yield rt
    rt.broker.close()
    services.close()


def queued(broker: dramatiq.Broker, n: int) -> list[str]:
    """``n`` first-time bookings, one new person each, on the queue."""
    docs = people(payloads.invitee_created, n, f"c{uuid.uuid4().hex[:8]}")
    for body in docs:
        enqueue(broker, body)
    return docs


def enqueue(broker: dramatiq.Broker, body: str, **options: Any) -> None:
    message = build_message(body, received_at=time.time())
    message["options"].update(options)
    broker.enqueue(dramatiq.Message(**message))


def event_id(body: str) -> str:
    return read_event(parse_envelope(body)).identity.event_id


def consume(rt: WorkerRuntime, ids: list[str], timeout: float = 60) -> None:
    """Run the process's worker (a :class:`BatchWorker`) until every one of ``ids`` is done
    in the ledger and Redis holds nothing unacked."""
    worker = make_worker(rt.broker, rt.pipeline, rt.pipeline.settings.worker)
    assert isinstance(worker, BatchWorker)
    worker.start()
    ledger = rt.pipeline.ledger
    broker = rt.broker
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            rows = [ledger.event(i) for i in ids]
            done = all(r is not None and r.status in ("applied", "suppressed") for r in rows)
            if done and not unacked(broker):
                return
            time.sleep(0.05)
        raise AssertionError(f"not drained: {[ledger.event(i) for i in ids]}")
    finally:
        worker.stop(timeout=5000)


def unacked(broker: dramatiq.Broker) -> int:
    """Messages still held: waiting on the queue, or fetched and not yet acked."""
    if isinstance(broker, SqliteBroker):
        return sum(broker.store.count(QUEUE_NAME, state) for state in ("ready", "taken"))
    assert isinstance(broker, RedisBroker)
    client = broker.client
    held = client.hlen(f"{broker.namespace}:{QUEUE_NAME}.msgs")
    held += client.hlen(f"{broker.namespace}:{QUEUE_NAME}.DQ.msgs")
    return int(held)


def over(n: int) -> float:
    """Group passes so far of more than ``n`` events."""
    bucket = "calendly_brevo_worker_group_events_bucket"
    return metric(bucket, le="+Inf") - metric(bucket, le=f"{float(n)}")


def test_what_waits_on_the_queue_goes_in_batches_and_each_message_is_acked_once_recorded(
    fake: FakeBrevoServer, runtime: WorkerRuntime
) -> None:
    docs = queued(runtime.broker, 40)
    passes, events = groups()
    over_before, over_threads = over(16), over(8)
    consume(runtime, [event_id(b) for b in docs])
    now_passes, now_events = groups()
    assert now_events - events == 40  # every event through the group pass …
    assert 3 <= now_passes - passes <= 20  # … in batches of worker.group_max at most,
    assert over(16) == over_before
    assert over(8) > over_threads  # not bounded by worker.threads (8): the queue held more
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    calls = requests(fake)  # a pass of one sends its custom event alone
    assert calls["POST /v3/events/batch"] + calls["POST /v3/events"] == now_passes - passes
    assert fake.snapshot()["violations"] == []


def test_a_retry_and_a_routing_form_take_the_one_event_threads(
    fake: FakeBrevoServer, runtime: WorkerRuntime
) -> None:
    retried, fresh = people(payloads.invitee_created, 2, f"r{uuid.uuid4().hex[:8]}")
    form = payloads.body(payloads.routing_form_submission()).decode()
    enqueue(runtime.broker, retried, retries=1)  # its first attempt failed
    enqueue(runtime.broker, form)
    enqueue(runtime.broker, fresh)
    _passes, events = groups()
    others = metric("calendly_brevo_worker_group_alone_total", reason="other_event")
    consume(runtime, [event_id(retried), event_id(fresh), event_id(form)])
    assert groups()[1] - events == 1  # only the fresh one in a pass
    assert metric("calendly_brevo_worker_group_alone_total", reason="other_event") == others + 1
    row = runtime.pipeline.ledger.event(event_id(retried))
    assert row is not None and row.status == "applied" and row.attempts == 1
    assert sent_ids(fake)[event_id(retried)] == 1


def test_a_batch_whose_request_failed_is_retried_by_dramatiq_and_nothing_fires_twice(
    fake: FakeBrevoServer, runtime: WorkerRuntime
) -> None:
    docs = queued(runtime.broker, 6)
    fake.inject("5xx", path=r"^/v3/events(/batch)?$", method="POST", count=1, status=503)
    consume(runtime, [event_id(b) for b in docs])
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    rows = [runtime.pipeline.ledger.event(event_id(b)) for b in docs]
    # The failed batch's events were retried once each, alone; a later batch's went through.
    attempts = Counter(r.attempts for r in rows if r is not None)
    assert set(attempts) <= {1, 2} and attempts[2] >= 1


def test_the_batched_ack_is_dramatiqs_an_acked_message_is_gone_a_failed_one_dead_lettered(
    redis_url: str,
) -> None:
    broker = RedisBroker(url=redis_url, namespace=f"t{uuid.uuid4().hex[:6]}")  # type: ignore[no-untyped-call]
    try:
        broker.declare_queue(QUEUE_NAME)
        for body in ("a", "b", "c"):
            broker.enqueue(dramatiq.Message(**build_message(body, received_at=1.0)))

        class Thread:  # what ack_all reads of Dramatiq's consumer thread
            consumer: Any = broker.consume(QUEUE_NAME, prefetch=3, timeout=100)

        taken = [next(Thread.consumer) for _ in range(3)]
        assert all(m is not None for m in taken)
        taken[1].fail()
        ack_all(broker, Thread, taken)  # type: ignore[arg-type]
        client: redis.Redis = broker.client
        ns = broker.namespace
        assert client.hlen(f"{ns}:{QUEUE_NAME}.msgs") == 0
        assert client.zcard(f"{ns}:{QUEUE_NAME}.XQ") == 1  # the failed one, dead-lettered
        assert client.scard(f"{ns}:__acks__.{broker.broker_id}.{QUEUE_NAME}") == 0
        assert Thread.consumer.outstanding_message_count == 0  # room to prefetch again
        assert all(m.actor_name == ACTOR_NAME for m in taken)
    finally:
        broker.close()
