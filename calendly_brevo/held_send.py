"""``resync --events --send``: each held custom event (:mod:`calendly_brevo.held`) sent at most
once through the worker's own path (:class:`~calendly_brevo.event_send.EventSender`), under the
contact's lock and after reading the event again; see :mod:`calendly_brevo.held` for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from calendly_brevo.config import Settings
from calendly_brevo.errors import BrevoTransientError, PermanentError, TransientError
from calendly_brevo.event_send import EVENT_IN_DOUBT, EventPort, EventSender, LookupBudget
from calendly_brevo.held import HeldEvent, Parsed, parse_held
from calendly_brevo.ledger import EventRow, Ledger, record_durably
from calendly_brevo.ledger.base import UNSENT_STATUSES
from calendly_brevo.logs import scrub_error


@dataclass
class SendSummary:
    listed: int = 0
    sent: int = 0
    #: Sent meanwhile by someone else (another ``--send``), or no longer held.
    skipped: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "sent": self.sent,
            "skipped": self.skipped,
            "failures": self.failures,
            "errors": self.errors,
        }


@dataclass
class HeldSender:
    """``resync --events --send``: each held event through the worker's at-most-once path."""

    ledger: Ledger
    settings: Settings
    brevo: EventPort
    lookups: LookupBudget | None = None
    summary: SendSummary = field(default_factory=SendSummary)

    def send(self, held: HeldEvent) -> bool:
        """Send one held event's custom event unless it was sent meanwhile; ``True``: sent (or
        found in Brevo by the in-doubt lookup)."""
        self.summary.listed += 1
        with self.ledger.contact_lock(held.lock_key or held.event_id):
            row = self.ledger.event(held.event_id)  # again, under the lock
            parsed = None
            if row is not None and row.status in UNSENT_STATUSES and "event" not in row.effects:
                parsed = parse_held(row, self.ledger, self.settings)
            if row is None or parsed is None:
                self.summary.skipped += 1
                return False
            return self._send(row, parsed)

    def _send(self, row: EventRow, parsed: Parsed) -> bool:
        sender = EventSender(self.ledger, self.brevo, self.settings.brevo, self.lookups)
        effects = dict(row.effects)
        in_doubt = bool(effects.get(EVENT_IN_DOUBT))
        if not in_doubt:
            sender.mark_in_doubt(row.event_id, effects)  # a kill mid-request: look it up first
        try:
            sender.send(row.event_id, parsed.event, effects, parsed.email, in_doubt=in_doubt)
        except (TransientError, PermanentError) as exc:
            reached = isinstance(exc, BrevoTransientError) and exc.maybe_applied
            if not in_doubt and not reached:  # it surely did not reach Brevo
                effects.pop(EVENT_IN_DOUBT, None)
                record_durably(self.ledger, row.event_id, effects)
            return self._failed(row, exc)
        self.summary.sent += 1
        return True

    def _failed(self, row: EventRow, exc: Exception) -> bool:
        self.summary.failures += 1
        error = scrub_error(f"{type(exc).__name__}: {exc}")
        self.summary.errors.append(f"{row.event_id}: {error}")
        return False
