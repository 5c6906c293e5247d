"""The custom event, sent at most once when Brevo can say whether it has it.

Brevo's ``POST /events`` has no idempotency key. When an earlier attempt may have sent the event
(no answer after the request left, a 504, or a worker that died mid-event) the claim's effects
say so (:data:`EVENT_IN_DOUBT`, kept across attempts), and the event is first looked up in Brevo
by its ``connector_event_id`` property. The lookups take a share of Brevo's "other" family
(:class:`LookupBudget`); once it is spent, ``brevo.resend_in_doubt_events`` decides
between sending again and dead-lettering the event ``in_doubt``.

The worker's pipeline and ``resync --events --send`` (:mod:`calendly_brevo.held`) both send
through :class:`EventSender`, so a held event is sent at most once in the same way.
"""

from __future__ import annotations

from typing import Any, Protocol

from calendly_brevo import brevo_calls, metrics
from calendly_brevo.config import BrevoSettings
from calendly_brevo.errors import BrevoTransientError, EventInDoubt, PermanentError
from calendly_brevo.ledger import Claim, Ledger, record_durably
from calendly_brevo.logs import get_logger
from calendly_brevo.projection import EVENT_ID_PROPERTY, BrevoEvent

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
    ) -> None:
        """Send ``event`` (unless Brevo has it already); its record also marks the event
        applied (one commit)."""
        if in_doubt and self._already_in_brevo(event_id, event):
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

    def _already_in_brevo(self, event_id: str, event: BrevoEvent) -> bool:
        """Whether Brevo holds the in-doubt event. When the lookup share is spent the rule is:
        send again if ``brevo.resend_in_doubt_events`` lists the event (its automations take a
        duplicate), else raise :class:`EventInDoubt` (dead-lettered ``in_doubt``), rather than
        wait up to an hour for the "other" family to refill."""
        if not self.settings.check_before_resend:
            return False
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
            found = self.brevo.event_recorded(
                event.name,
                event_date=event.event_date,
                property_name=EVENT_ID_PROPERTY,
                property_value=event_id,
            )
        except PermanentError as exc:
            # The lookup itself is refused (plan, key scope): fall back to at-least-once.
            metrics.EVENT_RESEND_CHECKS.labels("unavailable").inc()
            log.warning("event_resend_check_unavailable", error=str(exc))
            return False
        metrics.EVENT_RESEND_CHECKS.labels("found" if found else "absent").inc()
        log.info("event_resend_check", found=found)
        return found
