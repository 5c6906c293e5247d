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
- ``suppressed``: stored, nothing pushed, with a reason
  (:data:`~worker.outcomes.SUPPRESSED_REASONS`).
- ``duplicate`` (already processed: nothing done), ``ignored`` (an event the connector does
  not handle: ``event_type.created`` …), ``dead_lettered`` (permanent failure, or the last
  attempt failed transiently: stored with its cause, never dropped).

``dry_run`` and ``suppressed`` events are done for deduplication (a redelivery changes
nothing) but not for Brevo: ``calendly-brevo resync`` diffs the projection of the stored state
against the last pushed one and pushes what a dry run or a switch held back.

Beside it: :mod:`worker.outcomes` (how an attempt ends: finished or dead-lettered, counted and
logged), :mod:`calendly_brevo.event_send` (the custom event sent once, with the in-doubt
lookups) and :mod:`worker.ports` (the protocols of the injected parts).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import structlog

from calendly_brevo import brevo_calls, metrics
from calendly_brevo.brevo.batching import Crowd
from calendly_brevo.config import Settings
from calendly_brevo.errors import PermanentError, TransientError, UnmappableEvent
from calendly_brevo.event_send import EventSender
from calendly_brevo.events import (
    HANDLED_EVENTS,
    INVITEE_EVENTS,
    ROUTING_FORM_SUBMITTED,
    EventIdentity,
    WebhookEvent,
    parse_envelope,
    read_event,
)
from calendly_brevo.ledger import Arrival, Claim, Failure, Ledger, State
from calendly_brevo.logs import get_logger
from calendly_brevo.mapping import event_type_synced
from calendly_brevo.projection import (
    ContactProjection,
    custom_event,
    effects_enabled,
    project_contact,
    routing_form_contact,
)
from calendly_brevo.pushed import mapping_fingerprint, pushed_projection, to_unlink
from calendly_brevo.state import mark_from_event, record_from_event
from worker.outcomes import STARTED, Outcome, count_retry, dead_letter, done, elapsed_ms
from worker.ports import BrevoPort, LookupBudget

if TYPE_CHECKING:
    from worker.group import GroupPass

log = get_logger("calendly_brevo.worker")


def received_time(received_at: float) -> datetime | None:
    """When the receiver took the event (``received_at``: its ``time.time()``, 0 unknown)."""
    return datetime.fromtimestamp(received_at, UTC) if received_at else None


def arrival(
    ident: EventIdentity,
    body: str,
    source: str,
    received: datetime | None,
    signature_key: str | None,
) -> Arrival:
    """What the claim stores of an event's first arrival (the one-event path's and the group
    pass's)."""
    return Arrival(
        ident.event_id,
        ident.event_name,
        ident.invitee_uri,
        ident.email,
        body,
        source,
        received,
        signature_key,
    )


@dataclass(frozen=True)
class Job:
    """One message's first attempt, as the worker's consumer hands it to the group pass
    (:mod:`worker.consumer`)."""

    body: str
    received_at: float
    source: str
    signature_key: str | None
    last: Last
    #: When the attempt started (``time.perf_counter()``), for its processing time.
    started: float


@dataclass(frozen=True)
class Last:
    """Whether this attempt is the last: for a failure (``worker.max_retries`` spent, or
    expired), and for a rate-limit wait (only once ``worker.max_age_seconds`` has passed)."""

    failure: bool
    expired: bool


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        brevo: BrevoPort,
        lookups: LookupBudget | None = None,
        crowd: Crowd | None = None,
    ) -> None:
        self.settings = settings
        #: The narrow part of ``settings`` the rules read (mapping, switches, event names).
        self.rules = settings.rules
        self.ledger = ledger
        self.brevo = brevo
        #: The attempts in progress, for coalescing (a batch leaves once all of them wait).
        self.crowd = crowd
        #: The process's group pass (:mod:`worker.group`), set by the runtime when it applies:
        #: the worker's consumer (:mod:`worker.consumer`) hands it batches of first attempts.
        self.group: GroupPass | None = None
        self.events = EventSender(ledger, brevo, settings.brevo, lookups)

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
        with self.crowd.member() if self.crowd is not None else nullcontext():
            last = Last(failure=final or expired, expired=expired)
            return self._attempt(
                body, received_at, attempt, source=source, signature_key=signature_key, last=last
            )

    def applied(self, name: str | None, received_at: float) -> None:
        """An event applied: its lag since it was received, and when the last one was."""
        if not received_at:
            return
        metrics.EVENT_LAG_SECONDS.labels(metrics.event_label(name)).observe(
            max(0.0, time.time() - received_at)
        )
        metrics.LAST_APPLIED_TIMESTAMP.set(time.time())

    def _attempt(
        self,
        body: str,
        received_at: float,
        attempt: int,
        *,
        source: str,
        signature_key: str | None,
        last: Last,
    ) -> Outcome:
        started = time.perf_counter()
        started_token = STARTED.set(started)
        structlog.contextvars.bind_contextvars(source=source, attempt=attempt)
        received = received_time(received_at)
        name: str | None = None
        try:
            try:
                env = parse_envelope(body)  # the one parse: JSON, then the envelope …
                name = env.event
                event = read_event(env)  # … then its payload, typed; nothing below re-reads it
                ident = event.identity
            except UnmappableEvent as exc:
                failure = Failure(None, name, exc.code, str(exc), attempt, body, source, received)
                return dead_letter(self.ledger, failure)
            structlog.contextvars.bind_contextvars(
                event_id=ident.event_id, event_name=ident.event_name
            )
            new = arrival(ident, body, source, received, signature_key)
            outcome = self._process(event, new, last)
            if outcome.status == "applied":
                self.applied(name, received_at)
            return outcome
        except TransientError as exc:
            count_retry(name, exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.EVENT_PROCESSING_SECONDS.labels(metrics.event_label(name)).observe(elapsed)
            structlog.contextvars.unbind_contextvars("source", "attempt", "event_id", "event_name")
            STARTED.reset(started_token)

    # -------------------------------------------------------------------------------------------
    def _process(self, event: WebhookEvent, new: Arrival, last: Last) -> Outcome:
        ident = event.identity
        lock_on = ident.email or ident.event_id
        with self.ledger.contact_lock(lock_on):
            forgotten = self._forgotten(ident)
            if forgotten:  # its claim keeps the event id (dedup), nothing about the person
                new = replace(new, invitee_uri=None, email=None, payload="")
            state = None if forgotten else self._state_of(event)
            claim = self.ledger.claim(new, state)
            if claim.duplicate:
                return done(self.ledger, ident, "duplicate", record=False)
            # The Brevo calls of this attempt, stored with the event's writes (trace).
            with brevo_calls.recording(claim.attempts, claim.calls):
                try:
                    outcome: tuple[str, bool, str | None] = ("suppressed", False, "forgotten")
                    if not forgotten:
                        outcome = self._apply(event, claim)
                    status, finished, reason = outcome
                except Exception as exc:
                    settled = self.settle(new, claim.attempts, exc, last)
                    if settled is None:
                        raise
                    return settled
                return done(self.ledger, ident, status, record=not finished, reason=reason)

    def settle(self, new: Arrival, attempts: int, exc: Exception, last: Last) -> Outcome | None:
        """A claimed attempt that failed with ``exc``: dead-lettered (its outcome: a permanent
        failure, or the last attempt), or recorded ``failed`` (``None``: the caller raises
        ``exc`` and the message is retried)."""
        if isinstance(exc, PermanentError):
            return dead_letter(self.ledger, new.failed(exc.code, str(exc), attempts))
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TransientError):
            if last.expired if exc.rate_limited else last.failure:
                reason = "expired" if last.expired else "retries_exhausted"
                return dead_letter(self.ledger, new.failed(reason, error, attempts))
            self.ledger.finish(new.event_id, "failed", error, calls=brevo_calls.stored())
            (log.info if exc.rate_limited else log.warning)(
                "event_rate_limited" if exc.rate_limited else "event_retry",
                outcome="rate_limited" if exc.rate_limited else "retried",
                duration_ms=elapsed_ms(),
                error=str(exc),
                delay=exc.delay,
            )
            return None
        # A bug, not an outage: record it; the last attempt dead-letters it.
        if last.failure:
            return dead_letter(self.ledger, new.failed("error", error, attempts))
        self.ledger.finish(new.event_id, "failed", error, calls=brevo_calls.stored())
        return None

    @cached_property
    def fingerprint(self) -> str:
        """The mapping fingerprint of the rules, computed once (not on every upsert)."""
        return mapping_fingerprint(self.rules)

    def _forgotten(self, ident: EventIdentity) -> bool:
        """A past event of a person ``forget`` removed (its invitee URI is tombstoned): neither
        stored nor pushed, so a redelivery or a backfill does not bring them back."""
        if ident.event_name not in INVITEE_EVENTS or not ident.invitee_uri:
            return False
        return self.ledger.is_tombstoned(invitee_uri=ident.invitee_uri)

    def _state_of(self, event: WebhookEvent) -> State | None:
        """The record and mark this event adds to the contact's state, if it adds any.
        Computed before the claim so the claim's transaction stores them."""
        if event.invitee is None:
            return None
        return record_from_event(event), mark_from_event(event)

    def _apply(self, event: WebhookEvent, claim: Claim) -> tuple[str, bool, str | None]:
        """Do the event's Brevo effects. Returns the status, whether it is already stored, and
        for ``suppressed`` the reason. The state was stored by the claim in every case."""
        rules = self.rules
        ident = event.identity
        effects = claim.effects
        name = ident.event_name
        if name not in HANDLED_EVENTS:
            return "ignored", False, None
        contact_on, event_on = effects_enabled(name, rules)
        if not contact_on and not event_on:
            reason = "sync_switch" if rules.enabled else "connector_disabled"
            return "suppressed", False, reason
        if name == ROUTING_FORM_SUBMITTED:
            projection = routing_form_contact(event, rules)
            if projection is None:
                return "ignored", False, None
            if self.brevo.dry_run:
                return self._dry(event, None, projection if contact_on else None, event_on)
            in_doubt = event_on and self.events.in_doubt(claim, after_contact=contact_on)
            if contact_on:
                self._upsert(ident.event_id, projection, effects)
            finished = self._send_event(
                event, None, effects, event_on, projection.email, in_doubt, claim.attempts
            )
            return "applied", finished, None

        email = ident.email
        if not email:
            raise UnmappableEvent("invitee has no email")
        if claim.records is None or claim.marks is None:  # _state_of gave it: cannot happen
            raise RuntimeError("an invitee event was claimed without its state")
        record = claim.record
        if record is not None and not event_type_synced(record, rules.sync.event_types):
            return "suppressed", False, "event_type_filter"
        projection = project_contact(email, claim.records, claim.marks, rules)
        if self.brevo.dry_run:
            return self._dry(event, record, projection if contact_on else None, event_on)
        in_doubt = event_on and self.events.in_doubt(claim, after_contact=contact_on)
        if contact_on:
            self._upsert(ident.event_id, projection, effects, record_pushed=True)
        finished = self._send_event(
            event, record, effects, event_on, email, in_doubt, claim.attempts
        )
        return "applied", finished, None

    def _dry(
        self,
        event: WebhookEvent,
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
        sent = custom_event(event, record, self.rules) if event_on else None
        if sent is not None and sent.email:
            self.brevo.create_event(
                sent.name,
                email=sent.email,
                properties=sent.properties,
                event_date=sent.event_date,
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
        last = self.ledger.last_pushed(projection.email) if record_pushed else None
        unlink = to_unlink(projection.unlink_list_ids, projection.list_ids, last)
        self.brevo.upsert_contact(
            projection.email,
            projection.attributes,
            list_ids=projection.list_ids,
            unlink_list_ids=unlink,
            existing=last is not None,
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
        event: WebhookEvent,
        record: Any,
        effects: dict[str, Any],
        enabled: bool,
        email: str,
        in_doubt: bool,
        attempts: int,
    ) -> bool:
        """Send the custom event once (:mod:`calendly_brevo.event_send`; ``attempts``: the
        claim's); ``True``: its record also marked the event applied."""
        if not enabled or effects.get("event"):
            return False
        sent = custom_event(event, record, self.rules)
        if sent is None:
            return False
        event_id = event.identity.event_id
        self.events.send(event_id, sent, effects, email, in_doubt=in_doubt, attempts=attempts)
        return True
