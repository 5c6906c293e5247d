"""The custom event, sent at most once when Brevo can say whether it has it.

Brevo's ``POST /events`` has no idempotency key. When an earlier attempt may have sent the event
(no answer after the request left, a 504, or a worker that died mid-event) the claim's effects
say so (:data:`EVENT_IN_DOUBT`, kept across attempts), and the event is first looked up in Brevo
by its ``connector_event_id`` property. The lookups take a share of Brevo's "other" family
(:class:`LookupBudget`); once it is spent, ``brevo.resend_in_doubt_events`` decides
between sending again and dead-lettering the event ``in_doubt``.

The events a group pass sent in one ``POST /events/batch`` (``worker/group.py``) are in doubt
together when its answer is lost or its worker dies, and their lookups share what they read
(:class:`BatchScans`): one scan of a two-minute window answers for every event of the batch dated
in it, so a lost batch costs about one lookup per event name, not one per event.

The worker's pipeline and ``resync --events --send`` (:mod:`calendly_brevo.held`) both send
through :class:`EventSender`, so a held event is sent at most once in the same way.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any, Protocol

from calendly_brevo import brevo_calls, metrics
from calendly_brevo.brevo.client import EventScan
from calendly_brevo.config import BrevoSettings
from calendly_brevo.errors import BrevoTransientError, EventInDoubt, PermanentError
from calendly_brevo.ledger import Claim, Ledger, record_durably
from calendly_brevo.ledger.base import striped_lock
from calendly_brevo.logs import get_logger
from calendly_brevo.projection import EVENT_ID_PROPERTY, BrevoEvent

log = get_logger("calendly_brevo.worker")

#: ``effects`` key: an earlier attempt may have sent the custom event (its outcome is unknown).
EVENT_IN_DOUBT = "event_in_doubt"
#: ``effects`` key: ``[batch id, attempt]``, the group pass's batch and attempt that sent the
#: custom event with others in one request (``worker/group.py``; see :class:`BatchScans`).
EVENT_BATCH = "event_batch"


class EventPort(Protocol):
    """The Brevo calls of a custom event (:class:`~calendly_brevo.brevo.client.BrevoClient`)."""

    def create_event(
        self,
        event_name: str,
        *,
        email: str,
        properties: dict[str, Any] | None = None,
        contact_properties: dict[str, Any] | None = None,
        event_date: str | None = None,
    ) -> Any: ...

    def scan_events(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        until: str | None = None,
    ) -> EventScan: ...


class LookupBudget(Protocol):
    """The in-doubt lookups' share of Brevo's "other" family (``brevo.lookup_share``)."""

    def take(self) -> bool:
        """A lookup may be made now (a token is taken); ``False``: the share is spent."""
        ...


class BatchScans:
    """What the in-doubt lookups of a batch's events read, shared by the batch's events.

    A scan may answer for another event of its batch only when nothing can have sent that
    event between the batch and the scan. That holds when both lookups are made by the first
    attempt after the batch's (``attempt`` one more than the batch's, kept in the claim):

    - the batch held its events' contact locks until it ended, and the attempt that scanned
      held one of them, so the scan came after every request of the batch;
    - the event's own claim counts its attempts, so no attempt of it ran in between.

    A scan answers ``True`` for any event whose value it read (Brevo does not delete events),
    and ``False`` only for one dated inside its window, if it read the whole window. Scans are
    kept for ``ttl`` seconds, for the ``keep`` most recent batches. The retries of a batch's
    events come back together; one thread at a time looks up for a batch (:meth:`turn`),
    so the others wait for its scan instead of making their own.
    """

    def __init__(self, *, keep: int = 64, ttl: float = 600.0) -> None:
        self.keep = keep
        self.ttl = ttl
        self._lock = threading.Lock()
        self._scans: OrderedDict[str, list[tuple[float, EventScan]]] = OrderedDict()
        self._turns = [threading.Lock() for _ in range(16)]

    def turn(self, batch: str) -> threading.Lock:
        """The batch's turn to look up (the process's other lookups for it wait for it; two
        batches may share one, as contact locks share stripes)."""
        lock: threading.Lock = striped_lock(self._turns, batch)
        return lock

    def answer(
        self, batch: str, event_name: str, event_date: str | None, value: str
    ) -> bool | None:
        """Whether the batch's scans say Brevo holds the event (``None``: they cannot say)."""
        oldest = time.monotonic() - self.ttl
        with self._lock:
            scans = [scan for at, scan in self._scans.get(batch, ()) if at >= oldest]
        if any(value in scan.values for scan in scans):
            return True
        if any(scan.covers(event_name, event_date) for scan in scans):
            return False
        return None

    def add(self, batch: str, scan: EventScan) -> None:
        """Keep ``scan`` for ``batch``; forget the batches past ``keep`` or ``ttl`` (a scan
        holds up to 1,000 event ids)."""
        now = time.monotonic()
        with self._lock:
            self._scans.setdefault(batch, []).append((now, scan))
            self._scans.move_to_end(batch)
            while self._scans:
                oldest = next(iter(self._scans.values()))
                if len(self._scans) <= self.keep and oldest[-1][0] >= now - self.ttl:
                    break
                self._scans.popitem(last=False)


def batch_of(effects: dict[str, Any], attempts: int) -> str | None:
    """The batch whose scans may answer for this attempt's lookup (see :class:`BatchScans`):
    the batch that sent the event, if this is the first attempt after the batch's."""
    sent = effects.get(EVENT_BATCH)
    if not isinstance(sent, list) or len(sent) != 2:
        return None
    batch, attempt = sent
    if not isinstance(batch, str) or not isinstance(attempt, int) or attempts != attempt + 1:
        return None
    return batch


class EventSender:
    def __init__(
        self,
        ledger: Ledger,
        brevo: EventPort,
        settings: BrevoSettings,
        lookups: LookupBudget | None = None,
    ) -> None:
        self.ledger = ledger
        self.brevo = brevo
        self.settings = settings
        #: ``None``: lookups are limited only by the "other" family's bucket itself.
        self.lookups = lookups
        self.scans = BatchScans()

    def in_doubt(self, claim: Claim, *, after_contact: bool) -> bool:
        """Whether an earlier attempt may have sent the custom event (kept across attempts).
        Asked at the claim, before this attempt records anything.

        An attempt that died (``interrupted``) can only have reached ``POST /events`` once its
        contact upsert, the step before, was recorded (``after_contact``: that step exists)."""
        effects = claim.effects
        if effects.get(EVENT_IN_DOUBT):
            return True
        if not claim.interrupted or (after_contact and not effects.get("contact")):
            return False
        # Remember it, in case this attempt fails too.
        self.mark_in_doubt(claim.event_id, effects)
        return True

    def mark_in_doubt(self, event_id: str, effects: dict[str, Any]) -> None:
        """Remember that the custom event may be in Brevo: the next attempt looks it up."""
        effects[EVENT_IN_DOUBT] = True
        record_durably(self.ledger, event_id, effects)

    def send(
        self,
        event_id: str,
        event: BrevoEvent,
        effects: dict[str, Any],
        email: str,
        *,
        in_doubt: bool,
        attempts: int = 0,
    ) -> None:
        """Send ``event`` (unless Brevo has it already); its record also marks the event
        applied (one commit). ``attempts``: the claim's, for :func:`batch_of`."""
        batch = batch_of(effects, attempts) if in_doubt else None
        with self.scans.turn(batch) if batch is not None else nullcontext():
            known = in_doubt and self._already_in_brevo(event_id, event, batch)
        if known:
            effects["event"] = event.name
            record_durably(
                self.ledger, event_id, effects, finish="applied", calls=brevo_calls.stored()
            )
            return
        try:
            self.brevo.create_event(
                event.name, email=email, properties=event.properties, event_date=event.event_date
            )
        except BrevoTransientError as exc:
            if exc.maybe_applied and not effects.get(EVENT_IN_DOUBT):
                self.mark_in_doubt(event_id, effects)
            raise
        effects["event"] = event.name
        record_durably(self.ledger, event_id, effects, finish="applied", calls=brevo_calls.stored())

    def _already_in_brevo(self, event_id: str, event: BrevoEvent, batch: str | None) -> bool:
        """Whether Brevo holds the in-doubt event: what a lookup for another event of its
        ``batch`` read, else a lookup of its own. When the lookup share is spent the rule is:
        send again if ``brevo.resend_in_doubt_events`` lists the event (its automations take a
        duplicate), else raise :class:`EventInDoubt` (dead-lettered ``in_doubt``), rather than
        wait up to an hour for the "other" family to refill."""
        if not self.settings.check_before_resend:
            return False
        if batch is not None:
            known = self.scans.answer(batch, event.name, event.event_date, event_id)
            if known is not None:
                result = "found_shared" if known else "absent_shared"
                metrics.EVENT_RESEND_CHECKS.labels(result).inc()
                log.info("event_resend_check", found=known, shared=True)
                return known
        if self.lookups is not None and not self.lookups.take():
            if event.name in self.settings.resend_in_doubt_events:
                metrics.EVENT_RESEND_CHECKS.labels("budget_spent_resent").inc()
                log.warning("event_resend_check_skipped", reason="lookup_share_spent")
                return False
            metrics.EVENT_RESEND_CHECKS.labels("budget_spent_in_doubt").inc()
            raise EventInDoubt(
                f"custom event {event.name} may already be in Brevo (an earlier attempt got no "
                "answer) and the in-doubt lookup share (brevo.lookup_share) is spent. Check "
                f"Brevo for it (event property {EVENT_ID_PROPERTY} = {event_id}); if it "
                "is missing, `calendly-brevo dlq replay` looks it up again and sends it, if it "
                "is there, `dlq purge` the row. Or list the event in "
                "brevo.resend_in_doubt_events if its automations tolerate a duplicate."
            )
        try:
            scan = self.brevo.scan_events(  # a batch's: the whole window, for the others
                event.name,
                event_date=event.event_date,
                property_name=EVENT_ID_PROPERTY,
                until=None if batch is not None else event_id,
            )
        except PermanentError as exc:
            # The lookup itself is refused (plan, key scope): fall back to at-least-once.
            metrics.EVENT_RESEND_CHECKS.labels("unavailable").inc()
            log.warning("event_resend_check_unavailable", error=str(exc))
            return False
        if batch is not None:
            self.scans.add(batch, scan)
        found = event_id in scan.values
        metrics.EVENT_RESEND_CHECKS.labels("found" if found else "absent").inc()
        log.info("event_resend_check", found=found)
        return found
