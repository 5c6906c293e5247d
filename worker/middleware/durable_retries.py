"""Dramatiq's Retries, with a retry that is never lost to a queue outage.

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

from dramatiq.middleware import Retries

from calendly_brevo.logs import get_logger

log = get_logger("calendly_brevo.worker")


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
        super().after_process_message(
            _PersistentEnqueue(broker), message, result=result, exception=exception
        )
