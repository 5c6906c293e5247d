"""The gauges no single event moves: queue depth, open dead letters, messages held by dead
workers, subscription state.

One refresher, called on a timer by the worker supervisor (a thread) and by the embedded
``run`` (from its event loop, in a worker thread). Best effort: a failed refresh is logged at
debug level and the previous values stay.
"""

from __future__ import annotations

from calendly_brevo import metrics
from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.subscription_probe import SubscriptionProbe
from calendly_brevo.logs import get_logger
from calendly_brevo.queue_health import held_by_stale_workers
from calendly_brevo.status import stale_contacts

log = get_logger("calendly_brevo.worker")


class GaugeRefresher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.probe = SubscriptionProbe(services.settings, services.sessions)

    def refresh(self) -> None:
        try:
            for kind, n in self.services.enqueuer.depth().items():
                metrics.QUEUE_DEPTH.labels("calendly", kind).set(n)
            metrics.DEAD_LETTERS.set(self.services.ledger.open_dead_letters())
            settings = self.services.settings
            metrics.STALE_CONTACTS.set(stale_contacts(settings.rules, self.services.ledger))
            if settings.storage.redis_url:
                # Also set by the maintenance thread; counted here too so that a maintenance
                # that stopped running shows (and alerts) instead of freezing the gauge at 0.
                timeout_ms = int(settings.worker.heartbeat_timeout_seconds * 1000)
                metrics.STALE_WORKER_MESSAGES.set(
                    held_by_stale_workers(self.services.redis, heartbeat_timeout_ms=timeout_ms)
                )
            self.probe.refresh()  # a Calendly call every few minutes at most
        except Exception as exc:  # a gauge refresh must never take its caller down
            log.debug("gauge_refresh_failed", error=type(exc).__name__)
