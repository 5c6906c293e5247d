"""A logical event's Brevo custom event, sent at most once: the worker's path, and the one
``resync --events --send`` takes for events a dry run or a switch held back.

Brevo's ``POST /events`` has no idempotency key, so "once" rests on the ledger:

- the claim's ``effects`` record ``event`` (the name sent) in the same commit that marks the
  event ``applied`` (:func:`~calendly_brevo.ledger.record_durably`: a database outage after
  Brevo took the event is waited out, never turned into a retry);
- an attempt that may have reached Brevo without learning the answer (no answer after the
  request left, a 504, or a process that died mid-event) leaves :data:`EVENT_IN_DOUBT` in the
  effects; the next attempt first looks the event up in Brevo by its ``connector_event_id``
  property (:meth:`EventSender.already_in_brevo`), within the lookup share of Brevo's "other"
  family (``brevo.lookup_share``).

Everything here runs under the contact's lock (:meth:`~calendly_brevo.ledger.Ledger.contact_lock`),
the caller's job, so two senders of one event serialise and the second sees ``event``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from calendly_brevo import metrics
from calendly_brevo.config import Settings
from calendly_brevo.errors import BrevoTransientError, EventInDoubt, PermanentError
from calendly_brevo.events import Envelope, EventIdentity
from calendly_brevo.ledger import Claim, Ledger, record_durably
from calendly_brevo.logs import get_logger
from calendly_brevo.projection import EVENT_ID_PROPERTY, BrevoEvent, custom_event
from calendly_brevo.state import InviteeRecord

log = get_logger("calendly_brevo.worker")

#: ``effects`` key: an earlier attempt may have sent the custom event (its outcome is unknown).
EVENT_IN_DOUBT = "event_in_doubt"


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

    def event_recorded(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        property_value: str,
    ) -> bool: ...


class LookupBudget(Protocol):
    """The in-doubt lookups' share of Brevo's "other" family (``brevo.lookup_share``)."""

    def take(self) -> bool:
        """A lookup may be made now (a token is taken); ``False``: the share is spent."""
        ...


@dataclass(frozen=True)
class EventSender:
    settings: Settings
    ledger: Ledger
    brevo: EventPort
    #: ``None``: lookups are limited only by the "other" family's bucket itself.
    lookups: LookupBudget | None = None

    def send(
        self,
        ident: EventIdentity,
        env: Envelope,
        record: InviteeRecord | None,
        effects: dict[str, Any],
        email: str,
        *,
        in_doubt: bool,
    ) -> bool:
        """Send the custom event once; its record also marks the event applied (one commit).
        ``False`` when there is none to send (already sent, or none under today's config).

        When an earlier attempt may have sent it (``in_doubt``), it is first looked up in Brevo
        by its ``connector_event_id`` property."""
        if effects.get("event"):
            return False
        event = custom_event(ident, env, record, self.settings)
        if event is None:
            return False
        if in_doubt and self.already_in_brevo(ident, event):
            effects["event"] = event.name
            record_durably(self.ledger, ident.event_id, effects, finish="applied")
            return True
        try:
            self.brevo.create_event(
                event.name, email=email, properties=event.properties, event_date=event.event_date
            )
        except BrevoTransientError as exc:
            if exc.maybe_applied and not effects.get(EVENT_IN_DOUBT):
                self.mark_in_doubt(ident.event_id, effects)
            raise
        effects["event"] = event.name
        record_durably(self.ledger, ident.event_id, effects, finish="applied")
        return True

    def mark_in_doubt(self, event_id: str, effects: dict[str, Any]) -> None:
        """Remember that the custom event may be in Brevo: the next attempt looks it up."""
        effects[EVENT_IN_DOUBT] = True
        record_durably(self.ledger, event_id, effects)

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

    def already_in_brevo(self, ident: EventIdentity, event: BrevoEvent) -> bool:
        """Whether Brevo holds the in-doubt event. When the lookup share is spent the rule is:
        send again if ``brevo.resend_in_doubt_events`` lists the event (its automations take a
        duplicate), else raise :class:`EventInDoubt` (dead-lettered ``in_doubt``), rather than
        wait up to an hour for the "other" family to refill."""
        if not self.settings.brevo.check_before_resend:
            return False
        if self.lookups is not None and not self.lookups.take():
            if event.name in self.settings.brevo.resend_in_doubt_events:
                metrics.EVENT_RESEND_CHECKS.labels("budget_spent_resent").inc()
                log.warning("event_resend_check_skipped", reason="lookup_share_spent")
                return False
            metrics.EVENT_RESEND_CHECKS.labels("budget_spent_in_doubt").inc()
            raise EventInDoubt(
                f"custom event {event.name} may already be in Brevo (an earlier attempt got no "
                "answer) and the in-doubt lookup share (brevo.lookup_share) is spent. Check "
                f"Brevo for it (event property {EVENT_ID_PROPERTY} = {ident.event_id}); if it "
                "is missing, `calendly-brevo dlq replay` looks it up again and sends it, if it "
                "is there, `dlq purge` the row. Or list the event in "
                "brevo.resend_in_doubt_events if its automations tolerate a duplicate."
            )
        try:
            found = self.brevo.event_recorded(
                event.name,
                event_date=event.event_date,
                property_name=EVENT_ID_PROPERTY,
                property_value=ident.event_id,
            )
        except PermanentError as exc:
            # The lookup itself is refused (plan, key scope): fall back to at-least-once.
            metrics.EVENT_RESEND_CHECKS.labels("unavailable").inc()
            log.warning("event_resend_check_unavailable", error=str(exc))
            return False
        metrics.EVENT_RESEND_CHECKS.labels("found" if found else "absent").inc()
        log.info("event_resend_check", found=found)
        return found
