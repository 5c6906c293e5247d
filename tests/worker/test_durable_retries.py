"""A retry is stored even when the queue refuses the first re-enqueue attempts."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from worker.middleware.durable_retries import DurableRetries


def test_retry_enqueue_is_repeated_until_the_queue_takes_it() -> None:
    broker = StubBroker(middleware=[])
    broker.add_middleware(DurableRetries(max_retries=3, min_backoff=1, max_backoff=1))
    calls: list[int] = []
    original = broker.enqueue
    failures = {"left": 2}

    def flaky_enqueue(message: Any, *, delay: int | None = None) -> Any:
        if delay is not None and failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("redis is restarting")
        calls.append(delay or 0)
        return original(message, delay=delay)

    broker.enqueue = flaky_enqueue  # type: ignore[method-assign]
    attempts: list[int] = []

    def fails_once() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("transient")

    actor = dramatiq.Actor(
        fails_once, broker=broker, actor_name="fails_once", queue_name="q", priority=0, options={}
    )
    actor.send()
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.join("q", timeout=10_000)
        worker.join()
    finally:
        worker.stop()
    assert failures["left"] == 0
    assert len(attempts) == 2  # the retry was stored and ran
    assert broker.dead_letters == []
