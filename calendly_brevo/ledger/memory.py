"""The in-memory ledger: the pipeline's rules and tests, with no database.

It keeps the contract of the SQL ledgers (``tests/ledger/test_contract.py`` runs the same
suite on it), and stores records and effects as the JSON the SQL ledgers store, so a value
that could not be stored there fails here too. Its tables live in a :class:`MemoryTables`
that a second ledger can be opened over, the way a process reconnects to its database after
an outage. Nothing survives the process: it is not a storage for a running connector.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from calendly_brevo.ledger.base import (
    DONE,
    ERROR_LIMIT,
    SETTLED,
    UNSENT_STATUSES,
    Arrival,
    Claim,
    DeadLetter,
    DeadLetterFilter,
    EventRow,
    Failure,
    PushedProjection,
    State,
    now,
    striped_lock,
    tombstone_key,
    tombstone_keys,
)
from calendly_brevo.logs import scrub_error
from calendly_brevo.state import InviteeRecord, NoShowMark, merge_invitee, merge_no_show


@dataclass
class MemoryTables:
    events: dict[str, EventRow] = field(default_factory=dict)
    invitees: dict[str, InviteeRecord] = field(default_factory=dict)
    marks: dict[tuple[str, str], NoShowMark] = field(default_factory=dict)
    dead_letters: dict[int, DeadLetter] = field(default_factory=dict)
    tombstones: set[str] = field(default_factory=set)
    pushed: dict[str, PushedProjection] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    #: One lock for every table (the "transaction"), and the contact locks.
    lock: threading.RLock = field(default_factory=threading.RLock)
    contact_locks: list[threading.Lock] = field(
        default_factory=lambda: [threading.Lock() for _ in range(64)]
    )


class MemoryLedger:
    #: Nothing here fails transiently.
    transient_errors: tuple[type[Exception], ...] = ()

    def __init__(self, tables: MemoryTables | None = None) -> None:
        self.tables = tables if tables is not None else MemoryTables()

    @contextmanager
    def contact_lock(self, key: str) -> Iterator[None]:
        with striped_lock(self.tables.contact_locks, key):
            yield

    # -- claims and effects ----------------------------------------------------------------------
    def claim(self, new: Arrival, state: State | None = None) -> Claim:
        event_id, email = new.event_id, new.email
        t = self.tables
        with t.lock:
            row = t.events.get(event_id)
            if row is not None and row.status in DONE:
                effects = copy.deepcopy(row.effects)
                return Claim(event_id, duplicate=True, attempts=row.attempts, effects=effects)
            if row is None:
                row = EventRow(
                    event_id,
                    "new",
                    0,
                    {},
                    new.payload,
                    None,
                    None,
                    event_name=new.event_name,
                    signature_key=new.signature_key,
                )
            t.events[event_id] = replace(
                row,
                status="processing",
                attempts=row.attempts + 1,
                payload=row.payload if row.payload is not None else new.payload,
            )
            claim = Claim(
                event_id,
                duplicate=False,
                attempts=row.attempts + 1,
                effects=copy.deepcopy(row.effects),
                interrupted=row.status == "processing",
                calls=copy.deepcopy(row.calls),
            )
            if state is not None and email:
                record, mark = state
                if record is not None:
                    claim.record = self._save_invitee(record)
                if mark is not None:
                    self._save_mark(mark)
                claim.records, claim.marks = self.contact_state(email)
            return claim

    def record_effect(
        self,
        event_id: str,
        effects: dict[str, Any],
        finish: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        with self.tables.lock:
            row = self.tables.events.get(event_id)
            if row is None:
                return
            row = replace(row, effects=_as_stored(effects))
            if finish is not None:
                row = replace(row, status=finish, last_error=None)
            self._put(row, done=finish in DONE, calls=calls)

    def finish(
        self,
        event_id: str,
        status: str,
        error: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        with self.tables.lock:
            row = self.tables.events.get(event_id)
            if row is not None:
                row = replace(row, status=status, last_error=error)
                self._put(row, done=status in DONE, calls=calls)

    def _put(self, row: EventRow, *, done: bool, calls: list[dict[str, Any]] | None = None) -> None:
        if calls is not None:
            row = replace(row, calls=_as_stored(calls))
        self.tables.events[row.event_id] = replace(row, applied_at=now()) if done else row

    def event(self, event_id: str) -> EventRow | None:
        with self.tables.lock:
            row = self.tables.events.get(event_id)
            return copy.deepcopy(row)

    def settled(self, event_ids: Iterable[str]) -> set[str]:
        with self.tables.lock:
            rows = (self.tables.events.get(event_id) for event_id in set(event_ids))
            return {row.event_id for row in rows if row is not None and row.status in SETTLED}

    def unsent_events(
        self,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 500,
    ) -> list[EventRow]:
        with self.tables.lock:
            rows = [
                copy.deepcopy(row)
                for row in self.tables.events.values()
                if row.status in UNSENT_STATUSES
                and row.applied_at is not None
                and "event" not in row.effects
                and (since is None or row.applied_at >= since)
                and (after is None or (row.applied_at, row.event_id) > after)
            ]
        return sorted(rows, key=lambda r: (r.applied_at, r.event_id))[:limit]

    # -- invitee state ---------------------------------------------------------------------------
    def _save_invitee(self, record: InviteeRecord) -> InviteeRecord:
        with self.tables.lock:
            merged = merge_invitee(self.tables.invitees.get(record.invitee_uri), record)
            self.tables.invitees[merged.invitee_uri] = InviteeRecord.from_dict(
                _as_stored(merged.to_dict())
            )
            return merged

    def _save_mark(self, mark: NoShowMark) -> NoShowMark:
        with self.tables.lock:
            merged = merge_no_show(self.tables.marks.get(mark.key), mark)
            self.tables.marks[mark.key] = merged
            return merged

    def contact_states(
        self, emails: Iterable[str]
    ) -> dict[str, tuple[list[InviteeRecord], list[NoShowMark]]]:
        found = {e: self.contact_state(e) for e in set(emails)}
        return {e: state for e, state in found.items() if state[0]}

    def contact_state(self, email: str) -> tuple[list[InviteeRecord], list[NoShowMark]]:
        with self.tables.lock:
            records = [r for r in self.tables.invitees.values() if r.email == email]
            uris = {r.invitee_uri for r in records}
            marks = [m for m in self.tables.marks.values() if m.invitee_uri in uris]
            return records, marks

    # -- dead letters ----------------------------------------------------------------------------
    def dead_letter(self, failure: Failure, *, calls: list[dict[str, Any]] | None = None) -> int:
        error = scrub_error(failure.error)[:ERROR_LIMIT]
        event_id = failure.event_id
        t = self.tables
        with t.lock:
            if event_id is not None and event_id in t.events:
                dead = replace(t.events[event_id], status="dead", last_error=error)
                self._put(dead, done=False, calls=calls)
            kept = max(
                (
                    d
                    for d in t.dead_letters.values()
                    if d.event_id == event_id and not d.replayed_at
                ),
                key=_id,
                default=None,
            )
            if kept is None or event_id is None:  # without an event id, every failure is new
                kept = DeadLetter(
                    **vars(failure), id=next(t.ids), created_at=now(), replayed_at=None
                )
            row = replace(
                kept,
                reason=failure.reason,
                error=error,
                attempts=failure.attempts,
                payload=failure.payload,
                source=failure.source,
                created_at=now(),
            )
            t.dead_letters[row.id] = row
            return row.id

    def dead_letters(self, f: DeadLetterFilter, limit: int | None = 100) -> list[DeadLetter]:
        with self.tables.lock:
            rows = list(iter_matching(sorted(self.tables.dead_letters.values(), key=_id), f))
        return rows[:limit] if limit is not None else rows

    def dead_letter_by_id(self, dl_id: int) -> DeadLetter | None:
        with self.tables.lock:
            return self.tables.dead_letters.get(dl_id)

    def mark_replayed(self, dl_id: int) -> None:
        with self.tables.lock:
            row = self.tables.dead_letters.get(dl_id)
            if row is not None:
                self.tables.dead_letters[dl_id] = replace(row, replayed_at=now())

    def purge_dead_letters(self, f: DeadLetterFilter) -> int:
        with self.tables.lock:
            doomed = [d.id for d in iter_matching(self.tables.dead_letters.values(), f)]
            for dl_id in doomed:
                del self.tables.dead_letters[dl_id]
            return len(doomed)

    def open_dead_letters(self) -> int:
        with self.tables.lock:
            return sum(1 for d in self.tables.dead_letters.values() if d.replayed_at is None)

    # -- tombstones and projections --------------------------------------------------------------
    def add_tombstone(self, email: str, invitee_uris: Iterable[str]) -> None:
        keys = {tombstone_key("email", email)} | {tombstone_key("invitee", u) for u in invitee_uris}
        with self.tables.lock:
            self.tables.tombstones |= keys

    def is_tombstoned(self, *, email: str | None = None, invitee_uri: str | None = None) -> bool:
        keys = tombstone_keys(email=email, invitee_uri=invitee_uri)
        with self.tables.lock:
            return not self.tables.tombstones.isdisjoint(keys)

    def contacts(self, after: str | None = None, limit: int | None = None) -> list[str]:
        with self.tables.lock:
            emails = {r.email for r in self.tables.invitees.values() if r.email}
            emails |= set(self.tables.pushed)
        found = sorted(e for e in emails if after is None or e > after)
        return found[:limit] if limit is not None else found

    def last_pushed(self, email: str) -> PushedProjection | None:
        with self.tables.lock:
            return copy.deepcopy(self.tables.pushed.get(email))

    def last_pushed_many(self, emails: Iterable[str]) -> dict[str, PushedProjection]:
        with self.tables.lock:
            pushed = self.tables.pushed
            return {e: copy.deepcopy(pushed[e]) for e in set(emails) if e in pushed}

    def record_pushed(self, pushed: PushedProjection) -> None:
        with self.tables.lock:
            self.tables.pushed[pushed.email] = copy.deepcopy(pushed)

    def stale_pushed(self, fingerprint: str) -> int:
        with self.tables.lock:
            return sum(p.mapping_fingerprint != fingerprint for p in self.tables.pushed.values())


def _id(row: DeadLetter) -> int:
    return row.id


def iter_matching(rows: Iterable[DeadLetter], f: DeadLetterFilter) -> Iterator[DeadLetter]:
    """``f`` applied in Python (the in-memory ledger; SQL ledgers translate it to a query)."""
    needle = f.error.lower() if f.error else None
    for row in rows:
        if f.ids and row.id not in f.ids:
            continue
        if f.event and row.event_name != f.event:
            continue
        if needle and needle not in row.reason.lower() and needle not in row.error.lower():
            continue
        if f.since and row.created_at < f.since:
            continue
        if not f.include_replayed and not f.ids and row.replayed_at is not None:
            continue
        yield row


def _as_stored(value: Any) -> Any:
    """``value`` as it comes back from a JSON column."""
    return json.loads(json.dumps(value))
