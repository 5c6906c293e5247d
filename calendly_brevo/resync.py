"""Bring Brevo to the projection of the stored state under today's config (DESIGN invariant 7).

For one contact: the projection of its stored records (:func:`desired`), the difference from
what the connector last pushed (:func:`diff`: attributes whose value changed, lists to add, and
unlinks of lists *the connector itself had added*, including lists the config no longer names),
that difference pushed through the Brevo client (under the shared token bucket), and the new
pushed projection recorded. Custom events are never sent: a resync is not a booking.

- After a dry run, a switch turned on, the event-type filter or a mapping changed, the
  projection differs from the last push (or there is none) and the contact is pushed.
- A contact that already matches is skipped by the diff, so a second run pushes nothing and an
  interrupted run resumes where it stopped.
- ``full=True`` (``resync --all``) pushes every contact's whole projection, matching or not, to
  repair a Brevo contact edited by hand; unlinks still only touch lists the connector added.
- Attributes are set, never cleared: an attribute the mapping no longer produces keeps its last
  value in Brevo. Lists the connector never added (by hand, by a form) are never touched.
- A push that fails for good (or still fails after a few transient retries) becomes a dead
  letter (reason ``resync_failed``, source ``resync``); re-running ``resync`` retries it and
  marks the dead letter replayed once the contact is pushed (``dlq replay`` leaves it alone).

Weak spot: in the embedded mode the running connector's token bucket lives in its own process,
so a ``resync`` run beside it has a bucket of its own (Brevo's 429s still tighten both).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

from calendly_brevo.brevo.models import UpsertResult
from calendly_brevo.config import Rules
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError
from calendly_brevo.events import normalize_email
from calendly_brevo.ledger import DeadLetterFilter, Failure, Ledger, PushedProjection
from calendly_brevo.projection import ContactProjection, project_contact
from calendly_brevo.pushed import mapping_fingerprint, projection_hash, pushed_projection
from calendly_brevo.replay import RESYNC_SOURCE

#: Transient failures (429, 5xx, timeouts) of one contact's push are retried this many times.
TRANSIENT_TRIES = 3
#: Longest wait between two tries of one contact, in seconds.
MAX_WAIT = 30.0


class ResyncBrevo(Protocol):
    """The Brevo calls a resync makes (:class:`~calendly_brevo.brevo.client.BrevoClient`)."""

    def upsert_contact(
        self,
        email: str,
        attributes: dict[str, Any],
        list_ids: Iterable[int] = (),
        unlink_list_ids: Iterable[int] = (),
    ) -> UpsertResult: ...

    def update_contact(
        self,
        identifier: str | int,
        attributes: dict[str, Any] | None = None,
        list_ids: Iterable[int] = (),
        unlink_list_ids: Iterable[int] = (),
    ) -> None: ...


@dataclass(frozen=True)
class ContactDiff:
    """What one contact needs in Brevo to match its projection."""

    email: str
    #: Attributes to set (new or changed since the last push).
    attributes: dict[str, Any]
    add: tuple[int, ...]
    unlink: tuple[int, ...]
    #: The whole projection, recorded as pushed once the diff is in Brevo.
    projection: ContactProjection

    @property
    def empty(self) -> bool:
        return not (self.attributes or self.add or self.unlink)

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "attributes": self.attributes,
            "add_lists": list(self.add),
            "unlink_lists": list(self.unlink),
        }


def desired(email: str, ledger: Ledger, rules: Rules) -> ContactProjection:
    """The contact's projection from its stored records under ``rules``."""
    records, marks = ledger.contact_state(email)
    return project_contact(email, records, marks, rules)


def diff(
    projection: ContactProjection, last: PushedProjection | None, *, full: bool = False
) -> ContactDiff:
    """What to push so Brevo holds ``projection``, given what was ``last`` pushed (``None``:
    nothing yet). ``full``: every attribute and list, as if nothing had been pushed (unlinks
    still only of lists the connector added)."""
    before_attrs = {} if full or last is None else last.attributes
    before_lists = set() if last is None else set(last.list_ids)
    wanted = set(projection.list_ids)
    if not projection.attributes and not wanted and last is None:
        return ContactDiff(projection.email, {}, (), (), projection)  # nothing known to push
    attributes = {
        k: v
        for k, v in projection.attributes.items()
        if k not in before_attrs or before_attrs[k] != v
    }
    add = wanted if full else wanted - before_lists
    return ContactDiff(
        projection.email,
        attributes,
        tuple(sorted(add)),
        tuple(sorted(before_lists - wanted)),
        projection,
    )


def matches(projection: ContactProjection, last: PushedProjection | None) -> bool:
    """Whether the last push already gave Brevo this projection (the cheap check)."""
    if last is None:
        return not projection.attributes and not projection.list_ids
    return last.projection_hash == projection_hash(projection.attributes, projection.list_ids)


@dataclass
class Summary:
    checked: int = 0
    changed: int = 0
    calls: int = 0
    failures: int = 0
    dead_letter_ids: list[int] = field(default_factory=list)
    dry_run: bool = False
    contacts: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "changed": self.changed,
            "calls": self.calls,
            "failures": self.failures,
            "dead_letters": self.dead_letter_ids,
            "dry_run": self.dry_run,
            "contacts": self.contacts,
        }


class ContactPusher(Protocol):
    """The push step of a resync, the one place that talks to Brevo: puts one contact's
    difference in Brevo and returns the calls made; raises ``BrevoTransientError`` /
    ``BrevoPermanentError`` as the client does. :func:`one_by_one` is today's; a pusher on
    Brevo's batch endpoints can replace it. :class:`Resync` calls it under the contact's lock
    and records the push right after it returns, so a batching pusher must not return before
    the contact is in Brevo (or hold the locks of a whole batch): a live event of the contact
    pushed in between would otherwise be overwritten with the older projection."""

    def __call__(self, change: ContactDiff) -> int: ...


def one_by_one(brevo: ResyncBrevo) -> ContactPusher:
    """One upsert per contact (and an unlink call when Brevo already had it)."""
    return lambda change: push(brevo, change)


def push(brevo: ResyncBrevo, change: ContactDiff) -> int:
    """Push one contact's difference; returns the number of Brevo calls made."""
    if change.attributes or change.add:
        result = brevo.upsert_contact(
            change.email, change.attributes, list_ids=change.add, unlink_list_ids=change.unlink
        )
        # The client unlinks with a second call, unless Brevo just created the contact.
        return 1 + (1 if change.unlink and not result.created else 0)
    if change.unlink:
        brevo.update_contact(change.email, unlink_list_ids=change.unlink)
        return 1
    return 0


@dataclass
class Resync:
    """One resync run over a ledger and a Brevo client (``brevo=None``: plan only). ``pusher``
    replaces the push step (default: :func:`one_by_one` on ``brevo``)."""

    ledger: Ledger
    rules: Rules
    brevo: ResyncBrevo | None
    full: bool = False
    limit: int | None = None
    sleep: Callable[[float], None] = time.sleep
    summary: Summary = field(default_factory=Summary)
    pusher: ContactPusher | None = None
    #: Open dead letters of earlier runs, by email: marked replayed once the contact is pushed.
    _open: dict[str, list[int]] = field(default_factory=dict)

    @cached_property
    def fingerprint(self) -> str:
        """The mapping fingerprint of ``rules``, computed once per run."""
        return mapping_fingerprint(self.rules)

    def run(self, emails: Iterable[str], progress: Callable[[], None] | None = None) -> Summary:
        """Check ``emails`` in order. With the connector or contact sync switched off
        (:func:`contacts_synced`) nothing is pushed: the switches decide what is pushed."""
        self.summary.dry_run = self.brevo is None and self.pusher is None
        if not contacts_synced(self.rules):
            return self.summary
        self._open = open_failures(self.ledger)
        self._walk(emails, progress)
        return self.summary

    def _walk(self, emails: Iterable[str], progress: Callable[[], None] | None) -> None:
        """Check and push each contact in turn (:class:`~calendly_brevo.resync_bulk.BulkResync`
        pages them instead)."""
        for email in emails:
            if self.limit is not None and self.summary.changed >= self.limit:
                break
            self.contact(email)
            if progress is not None:
                progress()

    def contact(self, email: str) -> ContactDiff | None:
        """Check one contact and push its difference; ``None`` when it already matches."""
        email = normalize_email(email) or email.strip().lower()
        with self.ledger.contact_lock(email):
            planned = self.plan(email)
            if planned is None:
                return None
            change = planned[0]
            if self.brevo is None and self.pusher is None:
                return change
            if self._push(change):
                self._record(change)
            return change

    def plan(self, email: str) -> tuple[ContactDiff, PushedProjection | None] | None:
        """Under ``email``'s lock: its difference to push (counted in the summary) and what the
        connector last pushed (``None``: never); ``None`` when there is nothing to push."""
        projection = desired(email, self.ledger, self.rules)
        return self.plan_with(projection, self.ledger.last_pushed(email))

    def plan_with(
        self, projection: ContactProjection, last: PushedProjection | None
    ) -> tuple[ContactDiff, PushedProjection | None] | None:
        """:meth:`plan` from a projection and last push already read."""
        email = projection.email
        s = self.summary
        s.checked += 1
        if not self.full and matches(projection, last):
            self._resolve(email)  # an earlier failed push is moot: nothing to push now
            return None
        change = diff(projection, last, full=self.full)
        if change.empty:
            if last is not None and not matches(projection, last):
                self._record(change)  # only unchanged values moved (or none): note it
            return None
        s.changed += 1
        s.contacts.append(change.as_dict())
        return change, last

    def _push(self, change: ContactDiff) -> bool:
        if self.pusher is None:
            assert self.brevo is not None
            self.pusher = one_by_one(self.brevo)
        tries = 0
        while True:
            tries += 1
            try:
                self.summary.calls += self.pusher(change)
                return True
            except BrevoTransientError as exc:
                self.summary.calls += 1
                if tries >= TRANSIENT_TRIES:
                    self._failed(change, f"{type(exc).__name__}: {exc}", tries)
                    return False
                self.sleep(min(exc.delay or float(tries), MAX_WAIT))
            except BrevoPermanentError as exc:
                self.summary.calls += 1
                self._failed(change, f"{type(exc).__name__}: {exc}", tries)
                return False

    def _record(self, change: ContactDiff) -> None:
        p = change.projection
        self.ledger.record_pushed(
            pushed_projection(p.email, p.attributes, p.list_ids, self.fingerprint)
        )
        self._resolve(p.email)

    def _resolve(self, email: str) -> None:
        """Mark an earlier run's failed push of ``email`` replayed (resolved)."""
        for dl_id in self._open.pop(email, []):
            self.ledger.mark_replayed(dl_id)

    def _failed(self, change: ContactDiff, error: str, tries: int) -> None:
        payload = json.dumps({"resync": change.as_dict()}, sort_keys=True, default=str)
        failure = Failure(
            None, "resync", "resync_failed", error, tries, payload, RESYNC_SOURCE, datetime.now(UTC)
        )
        self.summary.failures += 1
        self.summary.dead_letter_ids.append(self.ledger.dead_letter(failure))


def open_failures(ledger: Ledger) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row in ledger.dead_letters(DeadLetterFilter(event="resync"), limit=None):
        if row.source != RESYNC_SOURCE:
            continue
        try:
            email = json.loads(row.payload)["resync"]["email"]
        except (ValueError, KeyError, TypeError):
            continue
        found.setdefault(str(email), []).append(row.id)
    return found


def contacts_synced(rules: Rules) -> bool:
    """``connectors.calendly.enabled`` and ``connectors.calendly.sync.contacts``."""
    return rules.enabled and rules.sync.contacts


def selected(ledger: Ledger, email: str | None, page: int = 500) -> Sequence[str] | Iterable[str]:
    """The emails a run looks at: one, or every stored contact in keyset pages."""
    if email is not None:
        return [normalize_email(email) or email.strip().lower()]
    return _every(ledger, page)


def _every(ledger: Ledger, page: int) -> Iterable[str]:
    after: str | None = None
    while True:
        emails = ledger.contacts(after=after, limit=page)
        yield from emails
        if len(emails) < page:
            return
        after = emails[-1]
