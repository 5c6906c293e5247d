"""Dramatiq's Retries, with a retry that is never lost to a queue outage, and waits that are
not failures.

A rate-limit wait (:class:`RateLimitWait`: our token bucket or a 429 said "not now", nothing was
tried) is re-enqueued after its delay and counted in the message option ``rate_limit_waits``,
not in ``retries``: an hour of Brevo's 100-per-hour family being spent must not dead-letter an
event as ``retries_exhausted``. ``worker.max_age_seconds`` still bounds how long it may wait.

Dramatiq's ``Retries`` re-enqueues a failed message (with its delay) from
``after_process_message``, and the worker acks the original right after. If Redis is down at
that moment the re-enqueue raises, Dramatiq logs it and moves on, and if Redis is back by the
time of the ack, the message is gone. Here the re-enqueue is tried again, with backoff, until the
queue takes it; the ack happens only after that. While Redis is down the worker thread waits,
which is all it could do anyway. Weakness: a shutdown during such an outage interrupts the
wait; the original is then unacked and Redis gives it back after the heartbeat timeout.
"""

from __future__ import annotations

import time
from typing import Any

from dramatiq import Retry
from dramatiq.middleware import Retries

from calendly_brevo.logs import get_logger

log = get_logger("calendly_brevo.worker")

#: The message option counting rate-limit waits (Dramatiq's ``retries`` counts failures).
WAITS_OPTION = "rate_limit_waits"


class RateLimitWait(Retry):
    """A retry that is a wait, not a failure (see the module docstring)."""


class _PersistentEnqueue:
    """A view of the broker whose ``enqueue`` keeps trying until it succeeds."""

    def __init__(self, broker: Any, max_interval: float = 5.0) -> None:
        self._broker = broker
        self._max_interval = max_interval

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        wait = 0.1
        attempts = 0
        while True:
            try:
                return self._broker.enqueue(message, delay=delay)
            except Exception as exc:  # the queue is away: the retry must still be stored
                attempts += 1
                log.warning(
                    "retry_enqueue_failed",
                    error=type(exc).__name__,
                    attempts=attempts,
                    next_try_in=wait,
                )
                time.sleep(wait)
                wait = min(wait * 2, self._max_interval)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


class DurableRetries(Retries):
    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if isinstance(exception, RateLimitWait):
            message.options[WAITS_OPTION] = int(message.options.get(WAITS_OPTION, 0)) + 1
            message.options["requeue_timestamp"] = int(time.time() * 1000)
            log.debug("rate_limit_wait", message_id=message.message_id, delay_ms=exception.delay)
            _PersistentEnqueue(broker).enqueue(message, delay=exception.delay)
            return
        super().after_process_message(
            _PersistentEnqueue(broker), message, result=result, exception=exception
        )
