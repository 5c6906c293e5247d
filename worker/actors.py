"""The actor: decode the message, call the pipeline, translate errors. Nothing else."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import CurrentMessage

from calendly_brevo.config import Settings
from calendly_brevo.errors import TransientError
from calendly_brevo.queueing import ACTOR_NAME, QUEUE_NAME
from worker.pipeline import Pipeline


def backoff_ms(retries: int, hint: float | None, settings: Settings) -> int:
    """Exponential backoff with full jitter, never sooner than the server's hint."""
    w = settings.worker
    ceiling = min(w.max_backoff_seconds, w.min_backoff_seconds * (2**retries))
    delay = random.uniform(w.min_backoff_seconds, max(w.min_backoff_seconds, ceiling))
    if hint is not None:
        delay = max(delay, min(hint, w.max_backoff_seconds))
    return int(delay * 1000)


def is_final(retries: int, received_at: float, settings: Settings) -> bool:
    w = settings.worker
    return retries >= w.max_retries or (time.time() - received_at) > w.max_age_seconds


def declare_actors(
    broker: dramatiq.Broker, settings: Settings, pipeline: Callable[[], Pipeline]
) -> dramatiq.Actor:  # type: ignore[type-arg]
    def process_event(body: str, received_at: float, source: str = "webhook") -> None:
        message = CurrentMessage.get_current_message()
        retries = int(message.options.get("retries", 0)) if message is not None else 0
        try:
            pipeline().process(
                body,
                received_at,
                source,
                attempt=retries + 1,
                final=is_final(retries, received_at, settings),
            )
        except TransientError as exc:
            raise dramatiq.Retry(delay=backoff_ms(retries, exc.delay, settings)) from exc

    return dramatiq.Actor(
        process_event,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={},
    )
