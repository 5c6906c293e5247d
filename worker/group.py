"""A group pass: the events a worker process's threads take up together, handled as one.

One event alone costs about a dozen Postgres statements (its lock, tombstone check, claim and
state, last pushed projection, effect and projection records, finish, unlock) and two Brevo
requests, and that per-message cost is what held one worker process to a fraction of what
Dramatiq alone can deliver (``benchmarks/RESULTS.md``). Here a batch of messages that the
worker process's consumer took off the queue together (:mod:`worker.consumer`) is handled by
one thread, with one statement and one Brevo request per step for all of them:

1. each event is parsed and screened: only an invitee event with an email whose contact is
   synced, on its first delivery, and one per contact and per invitee in a group; anything else
   (a routing form, a switch that holds the contact back, a retry, a second event of one
   contact) is left to the one-event path, unchanged, before the pass starts
   (:meth:`GroupPass.screen`);
2. the contact locks nobody holds, in one statement (a contact another thread or process holds
   is left to the one-event path, which waits for it in turn);
3. the claim of every event never stored before and not of a forgotten person, with its state
   merged, in one transaction, together with what was last pushed to each contact: two round
   trips in all (:meth:`~calendly_brevo.ledger.postgres.PostgresLedger.claim_fresh`); an event
   stored before or of a forgotten person is not claimed and takes the one-event path;
4. the contacts: the ones pushed before in one ``POST /contacts/batch``, new ones one
   ``POST /contacts`` each (Brevo has no bulk create but its asynchronous import, which a
   message would have to wait out), all in flight together from the pass's thread
   (:mod:`calendly_brevo.brevo.wire`); their effects and projections recorded in one round
   trip;
5. the custom events in one ``POST /events/batch``, recorded with each event's status in one
   statement.

The invariants are the one-event path's, item by item: each event keeps its own fate (a 207's
refused item is dead-lettered, an item whose answer was lost is marked in doubt and retried,
the accepted ones are recorded as sent); each effect is recorded (waiting out a database
outage) before its message is acked; a contact's events are never in one group and a group
holds its contacts' locks throughout, so per-contact order holds. A worker killed mid-group
leaves its events claimed ``processing``: their redeliveries take the one-event path, which
looks an in-doubt custom event up before sending it again; the batch recorded with the
contacts' effects lets those lookups share what they read
(:class:`~calendly_brevo.event_send.BatchScans`), as it does for the retries after a lost
answer.

The group pass needs the Postgres ledger (the set-based statements) and a Brevo client that
sends (not a dry run); it is off with ``brevo.batch.live_imports`` (each message there waits
for its import's read-back, which the one-event path's import batches share), with
``worker.batch_threads: 0``, and with ``worker.group_max: 1`` (a batch of one event).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from calendly_brevo import brevo_calls, metrics
from calendly_brevo.brevo.batching import own
from calendly_brevo.brevo.bulk import ContactUpdate, send_events, update_contacts, upsert_each
from calendly_brevo.brevo.client import BrevoClient, event_body
from calendly_brevo.errors import BrevoTransientError, TransientError, UnmappableEvent
from calendly_brevo.event_send import EVENT_BATCH, EVENT_IN_DOUBT
from calendly_brevo.events import INVITEE_EVENTS, WebhookEvent, parse_envelope, read_event
from calendly_brevo.ledger import Arrival, Claim, PushedProjection, State
from calendly_brevo.ledger.base import durably, record_durably
from calendly_brevo.ledger.postgres import PostgresLedger
from calendly_brevo.mapping import event_type_synced
from calendly_brevo.projection import (
    ContactProjection,
    custom_event,
    effects_enabled,
    project_contact,
)
from calendly_brevo.pushed import pushed_projection, to_unlink
from calendly_brevo.state import mark_from_event, record_from_event
from worker.outcomes import STARTED, Outcome, count_retry, done
from worker.pipeline import arrival, received_time

if TYPE_CHECKING:
    from worker.pipeline import Job, Pipeline


@dataclass
class Item:
    job: Job
    event: WebhookEvent
    new: Arrival
    state: State
    email: str
    claim: Claim = field(default_factory=lambda: Claim("", False, 1))
    log: brevo_calls.CallLog = field(default_factory=lambda: brevo_calls.CallLog(1))
    projection: ContactProjection | None = None
    #: Its custom event's ``POST /events`` body and name (``None``: none to send).
    body: dict[str, Any] | None = None
    sent_name: str | None = None
    #: The item's answer: an :class:`Outcome`, or the exception its thread raises.
    result: Outcome | BaseException | None = None

    @property
    def event_id(self) -> str:
        return self.new.event_id


class GroupPass:
    """The group pass of one worker process (see the module): the batches its consumer
    (:mod:`worker.consumer`) takes off the queue, screened (:meth:`screen`) and then run
    (:meth:`run`)."""

    def __init__(
        self,
        pipeline: Pipeline,
        ledger: PostgresLedger,
        client: BrevoClient,
        *,
        max_items: int,
    ) -> None:
        self.pipeline = pipeline
        self.ledger = ledger
        self.client = client
        self.rules = pipeline.rules
        #: The most events in one pass (``worker.group_max``).
        self.max_items = max_items

    # -- the pass ------------------------------------------------------------------------------
    def run(self, items: Sequence[Item]) -> None:
        """Run the screened ``items`` (:meth:`screen`) as one pass: each gets its
        ``result``, an :class:`Outcome`, the exception its message raises (a
        :class:`TransientError` is retried), or ``None``: it takes the one-event path."""
        if not items:
            return
        metrics.WORKER_GROUP_EVENTS.observe(len(items))
        started_token = STARTED.set(min(item.job.started for item in items))
        try:
            self._run(list(items))
        except BaseException as exc:  # every item shares the pass's fate
            for item in items:
                if item.result is None:
                    item.result = own(exc)
        finally:
            STARTED.reset(started_token)
        for item in items:
            result = item.result
            if isinstance(result, Outcome) and result.status == "applied":
                self.pipeline.applied(result.event_name, item.job.received_at)

    def _run(self, items: list[Item]) -> None:
        with (
            self.ledger.pinned(),
            self.ledger.free_contact_locks(item.email for item in items) as held,
        ):
            mine = _keep(items, lambda item: item.email in held, "locked")
            if mine:
                got = self.ledger.claim_fresh([(item.new, item.state) for item in mine])
                forgotten, claims = got.forgotten, got.claims
                mine = _keep(mine, lambda item: item.new.invitee_uri not in forgotten, "forgotten")
                mine = _keep(mine, lambda item: item.event_id in claims, "stored")
                for item in mine:
                    item.claim = claims[item.event_id]
                self._settled(mine, lambda claimed: self._apply(claimed, got.pushed))
                for item in mine:  # claimed here, so never the one-event path's now
                    if item.result is None:
                        item.result = RuntimeError("the group pass left this event unanswered")

    def screen(self, jobs: Sequence[Job]) -> list[Item]:
        """The jobs the pass can take (see the module), one per contact and per invitee, at
        most :attr:`max_items`; the others take the one-event path. Reads nothing but the
        jobs."""
        items: list[Item] = []
        seen: set[str] = set()
        for job in jobs:
            if len(items) >= self.max_items:
                metrics.WORKER_GROUP_ALONE.labels("group_full").inc()
                continue
            try:
                event = read_event(parse_envelope(job.body))
            except UnmappableEvent:  # the one-event path dead-letters it with its cause
                metrics.WORKER_GROUP_ALONE.labels("other_event").inc()
                continue
            ident = event.identity
            email, uri = ident.email, ident.invitee_uri
            invitee = ident.event_name in INVITEE_EVENTS and event.invitee is not None
            if not invitee or not email or not uri:
                metrics.WORKER_GROUP_ALONE.labels("other_event").inc()
                continue
            if not effects_enabled(ident.event_name, self.rules)[0]:  # the contact held back
                metrics.WORKER_GROUP_ALONE.labels("other_event").inc()
                continue
            if email in seen or uri in seen:
                metrics.WORKER_GROUP_ALONE.labels("same_contact").inc()
                continue
            seen |= {email, uri}
            received = received_time(job.received_at)
            new = arrival(ident, job.body, job.source, received, job.signature_key)
            state = (record_from_event(event), mark_from_event(event))
            items.append(Item(job, event, new, state, email))
        return items

    def _settled(self, items: list[Item], step: Callable[[list[Item]], None]) -> None:
        """Run ``step`` over the claimed ``items``; an error that ends the whole step (the
        database gone) is every unanswered item's own failure, as in the one-event path."""
        try:
            step(items)
        except Exception as exc:
            for item in items:
                if item.result is None:
                    self._fail(item, exc)

    def _apply(self, items: list[Item], last: dict[str, PushedProjection]) -> None:
        """Push the claimed ``items`` (``last``: what was last pushed to their contacts)."""
        rules = self.rules
        pushing: list[Item] = []
        for item in items:
            record = item.claim.record
            if record is not None and not event_type_synced(record, rules.sync.event_types):
                reason = "event_type_filter"
                item.result = self._report(item, "suppressed", reason=reason, record=True)
                continue
            assert item.claim.records is not None and item.claim.marks is not None
            item.projection = project_contact(
                item.email, item.claim.records, item.claim.marks, rules
            )
            self._event_of(item)
            pushing.append(item)
        if not pushing:
            return
        # Recorded with the contacts' effects: should the events' answer be lost (or this
        # process die), their lookups share what they read (calendly_brevo/event_send.py).
        batch = secrets.token_hex(8)
        for item in pushing:
            if item.body is not None:
                item.claim.effects[EVENT_BATCH] = [batch, item.claim.attempts]
        upserted = self._upsert(pushing, last)
        self._send_events(upserted)

    # -- contacts --------------------------------------------------------------------------------
    def _upsert(self, items: list[Item], last: dict[str, PushedProjection]) -> list[Item]:
        """Push each item's contact; record the effects and projections of those Brevo took.
        Returns them."""
        existing: list[tuple[Item, ContactUpdate]] = []
        new: list[tuple[Item, ContactUpdate]] = []
        results: dict[str, Any] = {}
        for item in items:
            projection = item.projection
            assert projection is not None
            before = last.get(projection.email)
            update = ContactUpdate(
                projection.email,
                dict(projection.attributes),
                tuple(projection.list_ids),
                to_unlink(projection.unlink_list_ids, projection.list_ids, before),
            )
            if before is not None:
                existing.append((item, update))
            else:
                new.append((item, update))
        if new:  # never pushed: one upsert each (Brevo has no synchronous bulk create)
            with self.ledger.released():  # no connection held while Brevo answers
                logs = [item.log for item, _u in new]
                answers = upsert_each(self.client, [u for _i, u in new], logs)
            results.update(zip([item.event_id for item, _u in new], answers, strict=True))
        if existing:
            answers = self._shared(
                [item for item, _u in existing],
                lambda: update_contacts(self.client, [u for _i, u in existing]),
            )
            results.update(zip([item.event_id for item, _u in existing], answers, strict=True))
        took: list[Item] = []
        for item in items:
            answer = results[item.event_id]
            if isinstance(answer, BaseException):
                self._fail(item, answer)
            else:
                item.claim.effects["contact"] = True
                took.append(item)
        fingerprint = self.pipeline.fingerprint
        pushed: list[PushedProjection] = []
        for item in took:
            projection = item.projection
            assert projection is not None
            pushed.append(
                pushed_projection(
                    projection.email,
                    projection.attributes,
                    projection.list_ids,
                    fingerprint,
                    item.event_id,
                )
            )
        # The effect (a retry must not upsert again) and what was pushed, in one statement.
        self._record(took, finish=lambda item: None if item.body else "applied", pushed=pushed)
        for item in took:
            if item.body is None:
                item.result = self._report(item, "applied")
        return [item for item in took if item.body is not None]

    # -- custom events ---------------------------------------------------------------------------
    def _event_of(self, item: Item) -> None:
        """Set the item's custom event body, if it has one to send (events on, and one)."""
        _contact_on, event_on = effects_enabled(item.new.event_name, self.rules)
        sent = custom_event(item.event, item.claim.record, self.rules) if event_on else None
        if sent is not None:
            item.sent_name = sent.name
            item.body = event_body(
                sent.name, email=item.email, properties=sent.properties, event_date=sent.event_date
            )

    def _send_events(self, items: list[Item]) -> None:
        if not items:
            return
        bodies = [item.body for item in items if item.body is not None]
        answers = self._shared(items, lambda: send_events(self.client, bodies))
        sent: list[Item] = []
        for item, answer in zip(items, answers, strict=True):
            if isinstance(answer, BaseException):
                if isinstance(answer, BrevoTransientError) and answer.maybe_applied:
                    item.claim.effects[EVENT_IN_DOUBT] = True  # the retry looks it up first
                    effects, calls = item.claim.effects, item.log.stored()
                    record_durably(self.ledger, item.event_id, effects, calls=calls)
                self._fail(item, answer)
            else:
                item.claim.effects["event"] = item.sent_name
                sent.append(item)
        self._record(sent, finish=lambda _item: "applied")
        for item in sent:
            item.result = self._report(item, "applied")

    # -- recording and answers -------------------------------------------------------------------
    def _shared(self, items: Sequence[Item], send: Callable[[], list[Any]]) -> list[Any]:
        """``send``'s answers, no database connection held meanwhile; the requests it made go
        into every item's call log."""
        with brevo_calls.recording(1) as made, self.ledger.released():
            answers = send()
        for item in items:
            with brevo_calls.using(item.log):
                brevo_calls.adopt(made.calls)
        return answers

    def _record(
        self,
        items: list[Item],
        *,
        finish: Callable[[Item], str | None],
        pushed: Sequence[PushedProjection] = (),
    ) -> None:
        """The items' effects (and, where ``finish`` says, their status) and the ``pushed``
        projections, in one statement, waiting out a database outage: Brevo has taken these
        effects."""
        if not items:
            return
        rows = [
            (item.event_id, dict(item.claim.effects), finish(item), item.log.stored())
            for item in items
        ]
        durably(self.ledger, lambda: self.ledger.record_effects(rows, pushed), what="effects")

    def _report(
        self, item: Item, status: str, *, reason: str | None = None, record: bool = False
    ) -> Outcome:
        """The item's outcome, counted and logged (``record``: its status written too)."""
        _timed(item)
        with (
            brevo_calls.using(item.log),
            structlog.contextvars.bound_contextvars(source=item.job.source, attempt=1),
        ):
            return done(self.ledger, item.event.identity, status, record=record, reason=reason)

    def _fail(self, item: Item, exc: BaseException) -> None:
        """The item's failure, as the one-event path settles it: dead-lettered (its outcome)
        or recorded failed (the exception its thread raises, retried)."""
        _timed(item)
        if not isinstance(exc, Exception):
            item.result = exc
            return
        ident = item.event.identity
        with (
            brevo_calls.using(item.log),
            structlog.contextvars.bound_contextvars(
                source=item.job.source,
                attempt=1,
                event_id=ident.event_id,
                event_name=ident.event_name,
            ),
        ):
            try:
                outcome = self.pipeline.settle(item.new, item.claim.attempts, exc, item.job.last)
            except Exception as during:  # recording the failure failed too (the database)
                item.result = own(during)
                return
        if outcome is None and isinstance(exc, TransientError):
            count_retry(ident.event_name, exc)
        # Its own copy: a group's items may share one exception (a request's, a step's).
        item.result = outcome if outcome is not None else own(exc)


def _keep(items: list[Item], keep: Callable[[Item], bool], reason: str) -> list[Item]:
    """Those of ``items`` that ``keep``; the others, counted by ``reason``, take the one-event
    path."""
    kept = [item for item in items if keep(item)]
    if len(kept) < len(items):
        metrics.WORKER_GROUP_ALONE.labels(reason).inc(len(items) - len(kept))
    return kept


def _timed(item: Item) -> None:
    """The item's attempt's processing time, as the one-event path observes every attempt's."""
    label = metrics.event_label(item.new.event_name)
    metrics.EVENT_PROCESSING_SECONDS.labels(label).observe(time.perf_counter() - item.job.started)
