"""Resync through Brevo's bulk endpoint: contacts the connector pushed before are updated
``brevo.batch.max_contacts`` at a time with one ``POST /contacts/batch`` (one token from the
shared bucket per request), instead of one request each.

A page of contacts is planned first, each under its own lock (:meth:`Resync.plan`); the page's
updates go out together, without holding the locks (a page's worth of Postgres advisory locks
would be a page's worth of connections); then each contact is settled under its lock again:

- its projection is what was sent: the push is recorded, as :meth:`Resync.contact` does;
- a live event changed it meanwhile: the live push and the batch may have crossed, so the
  whole current projection is pushed again, alone (an idempotent upsert), and recorded;
- its item failed (a transient error for the whole request, or a refusal after the batch was
  split into single calls): it goes the one-by-one way, with its retries and dead letter.

Contacts never pushed (after a dry run, say) are created one ``POST /contacts`` each:
``/contacts/batch`` only updates. A second run finds nothing to push, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from calendly_brevo.brevo.bulk import ContactUpdate, update_contacts
from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.events import normalize_email
from calendly_brevo.projection import ContactProjection
from calendly_brevo.pushed import projection_hash
from calendly_brevo.resync import (
    ContactDiff,
    Resync,
    Summary,
    contacts_synced,
    desired,
    diff,
    open_failures,
)

#: ``update_contacts(updates)`` → one result per update (a value, or its exception).
BulkUpdate = Callable[[Sequence[ContactUpdate]], Sequence[Any]]


def _same(a: ContactProjection, b: ContactProjection) -> bool:
    return projection_hash(a.attributes, a.list_ids) == projection_hash(b.attributes, b.list_ids)


@dataclass
class BulkResync(Resync):
    """:class:`Resync` with pages of updates through ``bulk`` (see the module)."""

    bulk: BulkUpdate | None = None
    page: int = 100

    def run(self, emails: Iterable[str], progress: Callable[[], None] | None = None) -> Summary:
        if self.bulk is None or self.brevo is None:
            return super().run(emails, progress)
        self.summary.dry_run = False
        if not contacts_synced(self.rules):
            return self.summary
        self._open = open_failures(self.ledger)
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
        return self.summary

    def _page(self, emails: list[str], progress: Callable[[], None] | None) -> None:
        known: list[ContactDiff] = []
        for email in emails:
            if self.limit is not None and self.summary.changed >= self.limit:
                break
            with self.ledger.contact_lock(email):
                planned = self.plan(email)
            if planned is not None:
                change, pushed_before = planned
                if pushed_before:
                    known.append(change)
                else:  # a new contact: only the single upsert creates it
                    self._settle(change, sent=False)
            if progress is not None:
                progress()
        if not known:
            return
        assert self.bulk is not None
        updates = [ContactUpdate(c.email, c.attributes, c.add, c.unlink) for c in known]
        results = self.bulk(updates) if len(updates) > 1 else [None]
        self.summary.calls += 1 if len(updates) > 1 else 0
        for change, result in zip(known, results, strict=True):
            self._settle(change, sent=len(updates) > 1 and not isinstance(result, BaseException))

    def _settle(self, change: ContactDiff, *, sent: bool) -> None:
        """Under the contact's lock: record what the batch sent, or push what is due now."""
        with self.ledger.contact_lock(change.email):
            now = desired(change.email, self.ledger, self.rules)
            if sent and _same(now, change.projection):
                self._record(change)
                return
            # Not sent, or a live event moved the contact meanwhile (its push and the batch
            # may have crossed): push it alone, whole if the batch reached Brevo.
            fresh = diff(now, self.ledger.last_pushed(change.email), full=self.full or sent)
            if fresh.empty:
                self._record(fresh)
                return
            if self._push(fresh):
                self._record(fresh)


def bulk_resync(run: Resync, client: BrevoClient, page: int) -> BulkResync:
    """``run`` (its options) on ``client``'s ``POST /contacts/batch``, ``page`` per request."""
    return BulkResync(
        run.ledger,
        run.rules,
        run.brevo,
        full=run.full,
        limit=run.limit,
        sleep=run.sleep,
        bulk=lambda updates: update_contacts(client, updates),
        page=page,
    )
