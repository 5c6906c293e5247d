"""The actor: decode the message, call the pipeline, translate errors. Nothing else."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from calendly_brevo.config import WorkerSettings
from calendly_brevo.errors import TransientError
from calendly_brevo.queueing import ACTOR_NAME, QUEUE_NAME, SIGNATURE_KEY_OPTION
from worker.middleware.durable_retries import WAITS_OPTION, RateLimitWait
from worker.pipeline import Pipeline

#: The longest wait taken from a hint (a 429's reset is already capped at 60 s by the client).
MAX_HINT_SECONDS = 3600.0


def backoff_ms(failures: int, exc: TransientError, w: WorkerSettings) -> int:
    """When to try again. A rate-limit wait: when the hint says, plus up to 10 % jitter so that
    the messages a pause held back do not all come back in the same millisecond. A failure:
    exponential backoff with full jitter, never sooner than the hint (capped by
    ``worker.max_backoff_seconds``)."""
    hint = None if exc.delay is None else min(max(exc.delay, 0.0), MAX_HINT_SECONDS)
    if exc.rate_limited and hint:
        return int(hint * random.uniform(1.0, 1.1) * 1000)
    ceiling = min(w.max_backoff_seconds, w.min_backoff_seconds * (2**failures))
    delay = random.uniform(w.min_backoff_seconds, max(w.min_backoff_seconds, ceiling))
    if hint is not None:
        delay = max(delay, min(hint, w.max_backoff_seconds))
    return int(delay * 1000)


def is_expired(received_at: float, w: WorkerSettings) -> bool:
    return (time.time() - received_at) > w.max_age_seconds


@dataclass(frozen=True)
class Attempt:
    """What a message's options say about this attempt: Dramatiq's ``retries`` counts failures
    only, rate-limit waits are counted apart (``waits``)."""

    failures: int
    waits: int
    #: The label of the key that verified the webhook (a message from an older receiver has
    #: none: the trace then says "unknown").
    signature_key: str | None

    @classmethod
    def of(cls, options: dict[str, Any]) -> Attempt:
        return cls(
            int(options.get("retries", 0)),
            int(options.get(WAITS_OPTION, 0)),
            options.get(SIGNATURE_KEY_OPTION),
        )

    @property
    def number(self) -> int:
        return self.failures + self.waits + 1

    def final(self, w: WorkerSettings) -> bool:
        return self.failures >= w.max_retries

    def retry(self, exc: TransientError, w: WorkerSettings) -> dramatiq.Retry:
        """The Dramatiq retry that puts the message back for a transient failure (a wait when
        a rate limit said "not now")."""
        retry = RateLimitWait if exc.rate_limited else dramatiq.Retry
        return retry(delay=backoff_ms(self.failures, exc, w))


def declare_actors(
    broker: dramatiq.Broker, w: WorkerSettings, pipeline: Callable[[], Pipeline]
) -> dramatiq.Actor:  # type: ignore[type-arg]
    def process_event(body: str, received_at: float, source: str = "webhook") -> None:
        message = CurrentMessage.get_current_message()
        attempt = Attempt.of(message.options if message is not None else {})
        try:
            pipeline().process(
                body,
                received_at,
                source,
                attempt=attempt.number,
                final=attempt.final(w),
                expired=is_expired(received_at, w),
                signature_key=attempt.signature_key,
            )
        except TransientError as exc:
            raise attempt.retry(exc, w) from exc

    return dramatiq.Actor(
        process_event,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={},
    )
