"""One event, start to finish: parse, identify, claim, update state, project, call Brevo, record.

Plain code over injected parts (settings, a :class:`~calendly_brevo.ledger.Ledger`, a Brevo
client), so it runs the same under Dramatiq, in the embedded mode and in tests (on the in-memory
ledger). The actor only decides whether this attempt is the last (``final``) and turns
:class:`TransientError` into ``dramatiq.Retry``.

Stored state is the source of truth (DESIGN invariant 7): every signed, parseable invitee event
is stored (its record, its no-show mark) whatever the sync switches, the event-type filter and a
dry run say; they decide only what is *pushed*. Outcomes:

- ``applied``: its Brevo calls were made; the contact's pushed projection is recorded.
- ``dry_run``: stored; the Brevo client ran dry (logged the calls, sent nothing).
- ``suppressed``: stored, nothing pushed, with a reason (:data:`SUPPRESSED_REASONS`).
- ``duplicate`` (already processed: nothing done), ``ignored`` (an event the connector does
  not handle: ``event_type.created`` …), ``dead_lettered`` (permanent failure, or the last
  attempt failed transiently: stored with its cause, never dropped).

``dry_run`` and ``suppressed`` events are done for deduplication (a redelivery changes
nothing) but not for Brevo: ``calendly-brevo resync`` diffs the projection of the stored state
against the last pushed one and pushes what a dry run or a switch held back.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import structlog

from calendly_brevo import brevo_calls, metrics
from calendly_brevo.config import Settings
from calendly_brevo.errors import (
    BrevoTransientError,
    EventInDoubt,
    PermanentError,
    TransientError,
    UnmappableEvent,
)
from calendly_brevo.events import (
    HANDLED_EVENTS,
    INVITEE_EVENTS,
    Envelope,
    EventIdentity,
    identify,
    parse_envelope,
)
from calendly_brevo.ledger import Arrival, Claim, Failure, Ledger, State, record_durably
from calendly_brevo.logs import get_logger
from calendly_brevo.mapping import event_type_synced
from calendly_brevo.projection import (
    EVENT_ID_PROPERTY,
    BrevoEvent,
    ContactProjection,
    custom_event,
    effects_enabled,
    project_contact,
    routing_form_contact,
)
from calendly_brevo.pushed import mapping_fingerprint, pushed_projection
from calendly_brevo.state import mark_from_event, record_from_event
from worker.ports import BrevoPort, LookupBudget

log = get_logger("calendly_brevo.worker")

#: When the current attempt started (perf_counter), for the ``duration_ms`` of its log line.
_STARTED: ContextVar[float] = ContextVar("calendly_brevo_event_started", default=0.0)


def _elapsed_ms() -> float:
    return round((time.perf_counter() - _STARTED.get()) * 1000, 2)


#: Why an event was stored but not pushed (the ``reason`` of ``suppressed``).
SUPPRESSED_REASONS = ("connector_disabled", "sync_switch", "event_type_filter", "forgotten")


#: ``effects`` key: an earlier attempt may have sent the custom event (its outcome is unknown).
EVENT_IN_DOUBT = "event_in_doubt"


@dataclass(frozen=True)
class _Last:
    """Whether this attempt is the last: for a failure (``worker.max_retries`` spent, or
    expired), and for a rate-limit wait (only once ``worker.max_age_seconds`` has passed)."""

    failure: bool
    expired: bool


@dataclass(frozen=True)
class Outcome:
    status: str
    event_name: str | None = None
    event_id: str | None = None
    detail: str | None = None


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        brevo: BrevoPort,
        lookups: LookupBudget | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.brevo = brevo
        #: ``None``: lookups are limited only by the "other" family's bucket itself.
        self.lookups = lookups

    def process(
        self,
        body: str,
        received_at: float,
        source: str = "webhook",
        *,
        attempt: int = 1,
        final: bool = False,
        expired: bool = False,
        signature_key: str | None = None,
    ) -> Outcome:
        """``final``: a failure now dead-letters the event (``worker.max_retries`` spent). Once
        ``expired`` (``worker.max_age_seconds``) a rate-limit wait does too: otherwise a wait is
        not a failure and is never the last attempt. ``signature_key``: the label of the key
        that verified the webhook, stored with the event's first arrival."""
        started = time.perf_counter()
        started_token = _STARTED.set(started)
        structlog.contextvars.bind_contextvars(source=source, attempt=attempt)
        received = datetime.fromtimestamp(received_at, UTC) if received_at else None
        name: str | None = None
        try:
            try:
                env = parse_envelope(body)
                name = env.event
                ident = identify(env)
            except UnmappableEvent as exc:
                failure = Failure(None, name, exc.code, str(exc), attempt, body, source, received)
                return self._dead_letter(failure)
            structlog.contextvars.bind_contextvars(
                event_id=ident.event_id, event_name=ident.event_name
            )
            last = _Last(failure=final or expired, expired=expired)
            new = Arrival(
                ident.event_id,
                ident.event_name,
                ident.invitee_uri,
                ident.email,
                body,
                source,
                received,
                signature_key,
            )
            outcome = self._process(env, ident, new, last)
            if outcome.status == "applied" and received_at:
                metrics.EVENT_LAG_SECONDS.labels(metrics.event_label(name)).observe(
                    max(0.0, time.time() - received_at)
                )
                metrics.LAST_APPLIED_TIMESTAMP.set(time.time())
            return outcome
        except TransientError as exc:
            outcome_label = "rate_limited" if exc.rate_limited else "retried"
            metrics.EVENTS_PROCESSED.labels(metrics.event_label(name), outcome_label).inc()
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.EVENT_PROCESSING_SECONDS.labels(metrics.event_label(name)).observe(elapsed)
            structlog.contextvars.unbind_contextvars("source", "attempt", "event_id", "event_name")
            _STARTED.reset(started_token)

    # -------------------------------------------------------------------------------------------
    def _process(self, env: Envelope, ident: EventIdentity, new: Arrival, last: _Last) -> Outcome:
        lock_on = ident.email or ident.event_id
        with self.ledger.contact_lock(lock_on):
            forgotten = self._forgotten(ident)
            if forgotten:  # its claim keeps the event id (dedup), nothing about the person
                new = replace(new, invitee_uri=None, email=None, payload="")
            state = None if forgotten else self._state_of(env, ident)
            claim = self.ledger.claim(new, None if isinstance(state, UnmappableEvent) else state)
            if claim.duplicate:
                return self._done(ident, "duplicate", record=False)
            # The Brevo calls of this attempt, stored with the event's writes (trace).
            with brevo_calls.recording(claim.attempts, claim.calls):
                try:
                    if isinstance(state, UnmappableEvent):
                        raise state
                    outcome: tuple[str, bool, str | None] = ("suppressed", False, "forgotten")
                    if not forgotten:
                        outcome = self._apply(env, ident, claim)
                    status, finished, reason = outcome
                except PermanentError as exc:
                    return self._dead_letter(new.failed(exc.code, str(exc), claim.attempts))
                except TransientError as exc:
                    if last.expired if exc.rate_limited else last.failure:
                        reason = "expired" if last.expired else "retries_exhausted"
                        error = f"{type(exc).__name__}: {exc}"
                        return self._dead_letter(new.failed(reason, error, claim.attempts))
                    self._failed(ident, exc)
                    (log.info if exc.rate_limited else log.warning)(
                        "event_rate_limited" if exc.rate_limited else "event_retry",
                        outcome="rate_limited" if exc.rate_limited else "retried",
                        duration_ms=_elapsed_ms(),
                        error=str(exc),
                        delay=exc.delay,
                    )
                    raise
                except Exception as exc:
                    # A bug, not an outage: record it; the last attempt dead-letters it.
                    if last.failure:
                        error = f"{type(exc).__name__}: {exc}"
                        return self._dead_letter(new.failed("error", error, claim.attempts))
                    self._failed(ident, exc)
                    raise
                return self._done(ident, status, record=not finished, reason=reason)

    def _failed(self, ident: EventIdentity, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.ledger.finish(ident.event_id, "failed", error, calls=brevo_calls.stored())

    @cached_property
    def fingerprint(self) -> str:
        """The mapping fingerprint of ``settings``, computed once (not on every upsert)."""
        return mapping_fingerprint(self.settings)

    def _forgotten(self, ident: EventIdentity) -> bool:
        """A past event of a person ``forget`` removed (its invitee URI is tombstoned): neither
        stored nor pushed, so a redelivery or a backfill does not bring them back."""
        if ident.event_name not in INVITEE_EVENTS or not ident.invitee_uri:
            return False
        return self.ledger.is_tombstoned(invitee_uri=ident.invitee_uri)

    def _state_of(self, env: Envelope, ident: EventIdentity) -> State | UnmappableEvent | None:
        """The record and mark this event adds to the contact's state, if it adds any.

        Computed before the claim so the claim's transaction stores them. A payload that cannot
        be mapped gives its error, raised after the claim: the event is dead-lettered as
        ``unmappable`` and nothing of it is stored."""
        if ident.event_name not in INVITEE_EVENTS or not ident.email:
            return None
        try:
            return record_from_event(env), mark_from_event(env)
        except UnmappableEvent as exc:
            return exc

    def _apply(
        self, env: Envelope, ident: EventIdentity, claim: Claim
    ) -> tuple[str, bool, str | None]:
        """Do the event's Brevo effects. Returns the status, whether it is already stored, and
        for ``suppressed`` the reason. The state was stored by the claim in every case."""
        settings = self.settings
        effects = claim.effects
        name = ident.event_name
        if name not in HANDLED_EVENTS:
            return "ignored", False, None
        contact_on, event_on = effects_enabled(name, settings)
        if not contact_on and not event_on:
            reason = "sync_switch" if settings.calendly.enabled else "connector_disabled"
            return "suppressed", False, reason
        if name == "routing_form_submission.created":
            projection = routing_form_contact(env, settings)
            if projection is None:
                return "ignored", False, None
            if self.brevo.dry_run:
                return self._dry(ident, env, None, projection if contact_on else None, event_on)
            in_doubt = event_on and self._in_doubt(claim, after_contact=contact_on)
            if contact_on:
                self._upsert(ident.event_id, projection, effects)
            finished = self._send_event(
                ident, env, None, effects, event_on, projection.email, in_doubt=in_doubt
            )
            return "applied", finished, None

        email = ident.email
        if not email:
            raise UnmappableEvent("invitee has no email")
        if claim.records is None or claim.marks is None:  # _state_of gave it: cannot happen
            raise RuntimeError("an invitee event was claimed without its state")
        record = claim.record
        if record is not None and not event_type_synced(record, settings):
            return "suppressed", False, "event_type_filter"
        projection = project_contact(email, claim.records, claim.marks, settings)
        if self.brevo.dry_run:
            return self._dry(ident, env, record, projection if contact_on else None, event_on)
        in_doubt = event_on and self._in_doubt(claim, after_contact=contact_on)
        if contact_on:
            self._upsert(ident.event_id, projection, effects, record_pushed=True)
        finished = self._send_event(ident, env, record, effects, event_on, email, in_doubt=in_doubt)
        return "applied", finished, None

    def _dry(
        self,
        ident: EventIdentity,
        env: Envelope,
        record: Any,
        projection: ContactProjection | None,
        event_on: bool,
    ) -> tuple[str, bool, str | None]:
        """A dry run: the client logs the calls it would make; nothing is recorded as pushed,
        so ``resync`` pushes the contact once there is a key."""
        if projection is not None:
            self.brevo.upsert_contact(
                projection.email,
                projection.attributes,
                list_ids=projection.list_ids,
                unlink_list_ids=projection.unlink_list_ids,
            )
        event = custom_event(ident, env, record, self.settings) if event_on else None
        if event is not None and event.email:
            self.brevo.create_event(
                event.name,
                email=event.email,
                properties=event.properties,
                event_date=event.event_date,
            )
        return "dry_run", False, None

    def _upsert(
        self,
        event_id: str,
        projection: ContactProjection,
        effects: dict[str, Any],
        *,
        record_pushed: bool = False,
    ) -> None:
        """The contact upsert, once. With ``record_pushed`` (an invitee's projection, not a
        routing form's), what was pushed is recorded right after the effect, with the same
        discipline: should that write fail, the retry skips the upsert and the stale record
        only makes ``resync`` push this contact's projection again (an idempotent upsert)."""
        if effects.get("contact"):
            return
        unlink = projection.unlink_list_ids
        if record_pushed:
            # Lists the connector added under an earlier config and no longer wants (a list
            # dropped from event_mapping is no longer managed, but it is still the connector's).
            last = self.ledger.last_pushed(projection.email)
            if last is not None:
                unlink = tuple(
                    sorted(set(unlink) | (set(last.list_ids) - set(projection.list_ids)))
                )
        self.brevo.upsert_contact(
            projection.email,
            projection.attributes,
            list_ids=projection.list_ids,
            unlink_list_ids=unlink,
        )
        effects["contact"] = True
        self.ledger.record_effect(event_id, effects, calls=brevo_calls.stored())
        if record_pushed:
            self.ledger.record_pushed(
                pushed_projection(
                    projection.email,
                    projection.attributes,
                    projection.list_ids,
                    self.fingerprint,
                    event_id,
                )
            )

    def _send_event(
        self,
        ident: EventIdentity,
        env: Envelope,
        record: Any,
        effects: dict[str, Any],
        enabled: bool,
        email: str,
        *,
        in_doubt: bool,
    ) -> bool:
        """Send the custom event once; its record also marks the event applied (one commit).

        Brevo's ``POST /events`` has no idempotency key. When an earlier attempt may have sent
        the event (no answer after the request left, a 504, or a worker that died mid-event),
        the event is first looked up in Brevo by its ``connector_event_id`` property."""
        if not enabled or effects.get("event"):
            return False
        event = custom_event(ident, env, record, self.settings)
        if event is None:
            return False
        if in_doubt and self._already_in_brevo(ident, event):
            effects["event"] = event.name
            self._applied(ident, effects)
            return True
        try:
            self.brevo.create_event(
                event.name, email=email, properties=event.properties, event_date=event.event_date
            )
        except BrevoTransientError as exc:
            if exc.maybe_applied and not effects.get(EVENT_IN_DOUBT):
                effects[EVENT_IN_DOUBT] = True
                record_durably(self.ledger, ident.event_id, effects)
            raise
        effects["event"] = event.name
        self._applied(ident, effects)
        return True

    def _applied(self, ident: EventIdentity, effects: dict[str, Any]) -> None:
        calls = brevo_calls.stored()
        record_durably(self.ledger, ident.event_id, effects, finish="applied", calls=calls)

    def _in_doubt(self, claim: Claim, *, after_contact: bool) -> bool:
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
        effects[EVENT_IN_DOUBT] = True
        record_durably(self.ledger, claim.event_id, effects)
        return True

    def _already_in_brevo(self, ident: EventIdentity, event: BrevoEvent) -> bool:
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

    # -------------------------------------------------------------------------------------------
    def _done(
        self,
        ident: EventIdentity,
        status: str,
        *,
        record: bool = True,
        reason: str | None = None,
    ) -> Outcome:
        if record:
            # A suppressed event keeps its reason where a failed one keeps its error.
            self.ledger.finish(ident.event_id, status, reason, calls=brevo_calls.stored())
        label = metrics.event_label(ident.event_name)
        metrics.EVENTS_PROCESSED.labels(label, status).inc()
        if reason is not None:
            metrics.EVENTS_SUPPRESSED.labels(label, reason).inc()
        log.info(
            "event_" + status,
            event_id=ident.event_id,
            event_name=ident.event_name,
            outcome=status,
            duration_ms=_elapsed_ms(),
            **({"reason": reason} if reason else {}),
        )
        return Outcome(status, ident.event_name, ident.event_id, reason)

    def _dead_letter(self, failure: Failure) -> Outcome:
        dl_id = self.ledger.dead_letter(failure, calls=brevo_calls.stored())
        label = metrics.event_label(failure.event_name)
        metrics.EVENTS_PROCESSED.labels(label, "dead_lettered").inc()
        metrics.DEAD_LETTERED.labels(label, failure.reason).inc()
        log.error(
            "event_dead_lettered",
            event_id=failure.event_id,
            event_name=failure.event_name,
            outcome="dead_lettered",
            duration_ms=_elapsed_ms(),
            reason=failure.reason,
            error=failure.error,
            dead_letter_id=dl_id,
        )
        return Outcome("dead_lettered", failure.event_name, failure.event_id, failure.error)
