"""How an event's attempt ends: its :class:`Outcome`, finished or dead-lettered in the ledger,
counted in the metrics and logged once with the attempt's ``duration_ms``.

The duration is measured from :data:`STARTED`, which :meth:`worker.pipeline.Pipeline.process`
sets at the start of every attempt (a ``ContextVar``: each worker thread has its own).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

from calendly_brevo import brevo_calls, metrics
from calendly_brevo.errors import TransientError
from calendly_brevo.events import EventIdentity
from calendly_brevo.ledger import Failure, Ledger
from calendly_brevo.logs import get_logger

log = get_logger("calendly_brevo.worker")

#: When the current attempt started (perf_counter), for the ``duration_ms`` of its log line.
STARTED: ContextVar[float] = ContextVar("calendly_brevo_event_started", default=0.0)

#: Why an event was stored but not pushed (the ``reason`` of ``suppressed``).
SUPPRESSED_REASONS = ("connector_disabled", "sync_switch", "event_type_filter", "forgotten")


def elapsed_ms() -> float:
    return round((time.perf_counter() - STARTED.get()) * 1000, 2)


@dataclass(frozen=True)
class Outcome:
    status: str
    event_name: str | None = None
    event_id: str | None = None
    detail: str | None = None


def done(
    ledger: Ledger,
    ident: EventIdentity,
    status: str,
    *,
    record: bool = True,
    reason: str | None = None,
) -> Outcome:
    """``record``: finish the claim with ``status`` (an event whose effects already recorded it
    applied is not finished twice). A suppressed event keeps its reason where a failed one
    keeps its error."""
    if record:
        ledger.finish(ident.event_id, status, reason, calls=brevo_calls.stored())
    label = metrics.event_label(ident.event_name)
    metrics.EVENTS_PROCESSED.labels(label, status).inc()
    if reason is not None:
        metrics.EVENTS_SUPPRESSED.labels(label, reason).inc()
    log.info(
        "event_" + status,
        event_id=ident.event_id,
        event_name=ident.event_name,
        outcome=status,
        duration_ms=elapsed_ms(),
        **({"reason": reason} if reason else {}),
    )
    return Outcome(status, ident.event_name, ident.event_id, reason)


def count_retry(event_name: str | None, exc: TransientError) -> None:
    """An attempt that ends in a retry: a rate-limit wait or a failure."""
    outcome = "rate_limited" if exc.rate_limited else "retried"
    metrics.EVENTS_PROCESSED.labels(metrics.event_label(event_name), outcome).inc()


def dead_letter(ledger: Ledger, failure: Failure) -> Outcome:
    """Store the event with its cause, never dropped (``calendly-brevo dlq`` replays it)."""
    dl_id = ledger.dead_letter(failure, calls=brevo_calls.stored())
    label = metrics.event_label(failure.event_name)
    metrics.EVENTS_PROCESSED.labels(label, "dead_lettered").inc()
    metrics.DEAD_LETTERED.labels(label, failure.reason).inc()
    log.error(
        "event_dead_lettered",
        event_id=failure.event_id,
        event_name=failure.event_name,
        outcome="dead_lettered",
        duration_ms=elapsed_ms(),
        reason=failure.reason,
        error=failure.error,
        dead_letter_id=dl_id,
    )
    return Outcome("dead_lettered", failure.event_name, failure.event_id, failure.error)
