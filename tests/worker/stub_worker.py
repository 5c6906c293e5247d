"""Messages through the real actor and middleware (retries, waits) on Dramatiq's StubBroker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from calendly_brevo.queueing import QUEUE_NAME
from worker.actors import declare_actors
from worker.broker import default_middleware
from worker.pipeline import Pipeline


def drain(pipeline: Pipeline, messages: list[tuple[str, float]], *, threads: int = 1) -> StubBroker:
    """Send each ``(body, received_at)`` and run a worker until the queue is empty; the broker
    (closed) is returned for its ``dead_letters``."""

    def send(_broker: StubBroker, actor: Any) -> None:
        for body, received_at in messages:
            actor.send(body, received_at, "webhook")

    return _run(pipeline, send, threads)


def drain_messages(pipeline: Pipeline, messages: list[dict[str, Any]]) -> StubBroker:
    """:func:`drain` for message dicts as :func:`calendly_brevo.queueing.build_message` writes
    them (the receiver's, options included, or an older receiver's)."""

    def send(broker: StubBroker, _actor: Any) -> None:
        for message in messages:
            broker.enqueue(dramatiq.Message(**message))

    return _run(pipeline, send, 1)


def _run(pipeline: Pipeline, send: Callable[[StubBroker, Any], None], threads: int) -> StubBroker:
    broker = StubBroker(middleware=default_middleware(pipeline.settings))
    broker.emit_after("process_boot")
    actor = declare_actors(broker, pipeline.settings.worker, lambda: pipeline)
    send(broker, actor)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        broker.join(QUEUE_NAME, timeout=60_000, fail_fast=True)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    return broker
