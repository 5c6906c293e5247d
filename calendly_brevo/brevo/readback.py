"""Reading an import back: ``GET /contacts?modifiedSince=…&limit=1000`` (the contacts family)
until each row of some imports is listed on all its lists, or a deadline passes, or an import
that has begun to show stops bringing more rows (its rows not seen were skipped). Also notes
which contacts Brevo *created* since the read's start (an import cannot unlink, so only those
need no unlink). Used by :mod:`calendly_brevo.brevo.imports`.

Imports in flight at once share their reads (:mod:`~calendly_brevo.brevo.shared_reads`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.brevo.shared_reads import RecentReads, recent_reads
from calendly_brevo.brevo.transport import _json, family_of
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError
from calendly_brevo.times import parse_time

#: Contacts per ``GET /contacts`` page (the spec's maximum).
READ_PAGE = 1000
#: Pauses between confirming reads, the last one repeated until ``confirm_seconds`` pass.
PAUSES = (0.2, 0.5, 1.0, 2.0)
#: Reads in a row that bring no further an import Brevo has begun to show before its rows not
#: seen are taken as skipped.
STALLED_READS = 2


@dataclass
class ReadBack:
    """The contacts of some imports (each import's rows and their lists), read back with
    ``GET /contacts?modifiedSince=since``: those ``seen`` on all their lists, and of those the
    ones Brevo ``created`` since."""

    client: BrevoClient
    since: datetime
    imports: list[dict[str, set[int]]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    reads: int = 0
    #: time.monotonic() when Brevo took the last of ``imports``: reads started after it count.
    taken: float = 0.0

    def confirm(self, deadline: float, sleep: Callable[[float], None]) -> None:
        """Read again after each pause until every row is seen or ``deadline`` passes. An
        import Brevo has begun to show, whose other rows :data:`STALLED_READS` reads in a row
        bring no further, is done with: its rows not seen were skipped (they are created
        alone), and waiting on them would hold every other row."""
        waiting = {email: lists for rows in self.imports for email, lists in rows.items()}
        stalled = [0] * len(self.imports)
        for attempt in range(10_000):
            if not waiting.keys() - self.seen:
                return
            pause = PAUSES[min(attempt, len(PAUSES) - 1)]
            if time.monotonic() + pause > deadline:
                return
            sleep(pause)
            shared = recent_reads(self.client)
            new = self._shared(shared, waiting)
            if waiting.keys() - self.seen and shared.wait_for_read(
                self.since, deadline - time.monotonic()
            ):
                new |= self._shared(shared, waiting)
            if waiting.keys() - self.seen:
                own = self._read(waiting) - self.seen
                self.seen |= own
                new |= own
            for n, rows in enumerate(self.imports):
                if rows.keys() & new or not rows.keys() & self.seen:
                    stalled[n] = 0
                    continue
                stalled[n] += 1
                if stalled[n] >= STALLED_READS:
                    for email in rows.keys() - self.seen:
                        waiting.pop(email, None)

    def _shared(self, shared: RecentReads, waiting: dict[str, set[int]]) -> set[str]:
        """Of ``waiting``, those newly seen in the reads that started after Brevo took the
        imports (another import's, or this one's earlier)."""
        found = {e for c in shared.after(self.taken) for e in self._take(c, waiting)} - self.seen
        self.seen |= found
        return found

    def _read(self, waiting: dict[str, set[int]]) -> set[str]:
        """One pass over the contacts changed since ``since``, a page at a time, stopping once
        all of ``waiting`` are found. A failed read ends the pass (the next tries again)."""
        stamp = self.since.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        pages = recent_reads(self.client)
        with pages.reading(self.since) as granted:
            return self._pages(stamp, waiting, pages, granted)

    def _pages(
        self,
        stamp: str,
        waiting: dict[str, set[int]],
        pages: RecentReads,
        granted: Callable[[], None],
    ) -> set[str]:
        found: set[str] = set()
        offset, started = 0, 0.0
        while waiting.keys() - self.seen - found:
            params = {"modifiedSince": stamp, "limit": READ_PAGE, "offset": offset, "sort": "desc"}
            self.reads += 1
            try:
                with self.client.holding(family_of("GET", "/contacts")):
                    # The read shows Brevo as it is once its token let it go, not before the
                    # wait for it: imports taken during that wait share it.
                    started = started or time.monotonic()
                    granted()
                    response = self.client.call("GET", "/contacts", params=params)
            except (BrevoPermanentError, BrevoTransientError):
                return found
            if response is None:
                return found
            data = _json(response)
            contacts = data.get("contacts") if isinstance(data, dict) else None
            if not isinstance(contacts, list) or not contacts:
                return found
            contacts = [c for c in contacts if isinstance(c, dict)]
            pages.note(started, contacts)
            for contact in contacts:
                found |= self._take(contact, waiting)
            if len(contacts) < READ_PAGE:
                return found
            offset += READ_PAGE
        return found

    def _take(self, contact: dict[str, Any], waiting: dict[str, set[int]]) -> set[str]:
        email = str(contact.get("email") or "").lower()
        if email not in waiting or not waiting[email] <= set(contact.get("listIds") or ()):
            return set()
        # Brevo's createdAt: ``2017-05-01 17:05:03+00:00`` in its examples, or RFC 3339.
        created = parse_time(str(contact.get("createdAt") or ""))
        if created is not None and created > self.since:
            self.created.add(email)
        return {email}
