"""Resync through Brevo's bulk endpoint: contacts the connector pushed before are updated
``brevo.batch.max_contacts`` at a time with one ``POST /contacts/batch`` (one token from the
shared bucket per request), instead of one request each.

A page of contacts is planned first from one read of their state and last pushes
(:meth:`Resync.plan_with`); the page's updates go out together, without holding the contacts'
locks (a page's worth of Postgres advisory locks would be a page's worth of connections); then
each contact is settled under its lock:

- Brevo applied its item and nothing else pushed it meanwhile (its last push is still the one
  the plan saw): the batch's push is recorded, as :meth:`Resync.contact` does;
- otherwise (a live event pushed it meanwhile, so the two may have crossed; or its item
  failed, which after a lost answer may still mean applied): the whole current projection is
  pushed again, alone (an idempotent upsert), taking the contact off any list the page added
  that the projection no longer wants, and recorded. A refused or failed push goes the
  one-by-one way, with its retries and dead letter.

Contacts never pushed (after a dry run, say) cannot go through ``/contacts/batch``, which only
updates: with ``imports`` they are gathered across pages, ``import_page`` at a time, into
``POST /contacts/import`` requests and read back (:mod:`calendly_brevo.brevo.imports`); each
is then settled as a sent batch item is, so one Brevo did not confirm, or one a live event
pushed meanwhile, is pushed alone. Without ``imports`` (or with fewer than
:data:`~calendly_brevo.brevo.imports.IMPORT_MIN`), they are created one ``POST /contacts``
each. A second run finds nothing to push, as before.

Planning without the locks has one harmless edge: when a contact's diff is empty but its last
push differs (only unchanged values moved), the plan records the projection as pushed; a live
push in between would then be recorded as this older one, and the next resync pushes the
contact once more (an idempotent upsert).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from calendly_brevo.brevo.bulk import ContactUpdate
from calendly_brevo.brevo.imports import IMPORT_MIN, Imported, importable
from calendly_brevo.events import normalize_email
from calendly_brevo.ledger import PushedProjection
from calendly_brevo.projection import project_contact
from calendly_brevo.resync import (
    ContactDiff,
    Resync,
    desired,
    diff,
)

#: ``update_contacts(updates)`` → one result per update (a value, or its exception).
BulkUpdate = Callable[[Sequence[ContactUpdate]], Sequence[Any]]
#: ``import_contacts(updates)``: per update, whether Brevo was seen holding it.
BulkImport = Callable[[Sequence[ContactUpdate]], Imported]


def _update(change: ContactDiff) -> ContactUpdate:
    return ContactUpdate(change.email, change.attributes, change.add, change.unlink)


def _same_push(a: PushedProjection | None, b: PushedProjection | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.projection_hash, a.pushed_at) == (b.projection_hash, b.pushed_at)


@dataclass
class BulkResync(Resync):
    """:class:`Resync` with pages of updates through ``bulk`` (see the module)."""

    bulk: BulkUpdate | None = None
    page: int = 100
    imports: BulkImport | None = None
    import_page: int = 1000
    _new: list[ContactDiff] = field(default_factory=list, init=False, repr=False)

    def _walk(self, emails: Iterable[str], progress: Callable[[], None] | None) -> None:
        if self.bulk is None or self.brevo is None:
            super()._walk(emails, progress)
            return
        page: list[str] = []
        for email in emails:
            if self.limit is not None and self.summary.changed >= self.limit:
                break
            page.append(normalize_email(email) or email.strip().lower())
            if len(page) >= self.page:
                self._page(page, progress)
                page = []
        if page:
            self._page(page, progress)
        self._import()

    def _created(self, change: ContactDiff) -> None:
        """A contact never pushed: into the next import when it fits one, else alone now."""
        if self.imports is None or not importable(_update(change)):
            self._settle(change, None, ok=False)
            return
        self._new.append(change)
        if len(self._new) >= self.import_page:
            self._import()

    def _import(self) -> None:
        new, self._new = self._new, []
        if not new:
            return
        if len(new) < IMPORT_MIN or self.imports is None:
            for change in new:
                self._settle(change, None, ok=False)
            return
        imported = self.imports([_update(c) for c in new])
        self.summary.calls += imported.requests
        for change, confirmed in zip(new, imported.confirmed, strict=True):
            self._settle(change, None, ok=confirmed, sent=True)

    def _page(self, emails: list[str], progress: Callable[[], None] | None) -> None:
        known: list[tuple[ContactDiff, PushedProjection]] = []
        # One read of the page's state and last pushes, without the locks: each contact is
        # settled under its lock, which catches a push made since (see the module).
        states = self.ledger.contact_states(emails)
        pushed = self.ledger.last_pushed_many(emails)
        for email in emails:
            if self.limit is not None and self.summary.changed >= self.limit:
                break
            records, marks = states.get(email, ([], []))
            projection = project_contact(email, records, marks, self.rules)
            planned = self.plan_with(projection, pushed.get(email))
            if planned is not None:
                change, last = planned
                if last is not None:
                    known.append((change, last))
                else:  # a new contact: /contacts/batch cannot create it
                    self._created(change)
            if progress is not None:
                progress()
        if not known:
            return
        assert self.bulk is not None
        updates = [_update(c) for c, _ in known]
        sent = len(updates) > 1
        results = self.bulk(updates) if sent else [None]
        self.summary.calls += 1 if sent else 0
        for (change, last), result in zip(known, results, strict=True):
            ok = sent and not isinstance(result, BaseException)
            self._settle(change, last, ok=ok, sent=sent)

    def _settle(
        self, change: ContactDiff, seen: PushedProjection | None, *, ok: bool, sent: bool = False
    ) -> None:
        """Under the contact's lock: record what the batch applied (``ok``), or push what is
        due now.

        Only a live push can be overwritten by the batch, and a live push is recorded (under
        this lock) before the lock is free: a last push other than the one the plan ``seen``
        means one happened meanwhile. A batch that was ``sent`` may have reached Brevo whatever
        its answer said (a lost answer is often an applied request), after that push or with a
        projection older than now's, so the repair is the whole projection of now, and it
        takes the contact off every list the batch added that the projection no longer wants."""
        with self.ledger.contact_lock(change.email):
            last = self.ledger.last_pushed(change.email)
            unchanged = _same_push(last, seen)
            if ok and unchanged:
                self._record(change)
                return
            now = desired(change.email, self.ledger, self.rules)
            fresh = diff(now, last, full=self.full or sent)
            if sent:
                stray = set(change.add) - set(now.list_ids)
                fresh = replace(fresh, unlink=tuple(sorted(set(fresh.unlink) | stray)))
            if fresh.empty:
                self._record(fresh)
                return
            if self._push(fresh):
                self._record(fresh)
