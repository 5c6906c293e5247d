"""The SQLite ledger, for the embedded mode: one process, the ORM throughout.

The contact lock is a process-local lock (striped over 64 locks by the key's hash, shared by
every ledger of the process on the same file): right for the embedded mode, which is one
process, and the reason this ledger is not for anything else.
SQLite serialises writers itself, so a claim's transaction needs no row locks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from calendly_brevo.db.models import Invitee, NoShow, ProcessedEvent
from calendly_brevo.ledger import common
from calendly_brevo.ledger.base import DONE, Arrival, Claim, State, now, striped_lock
from calendly_brevo.state import InviteeRecord, NoShowMark, merge_invitee, merge_no_show


def _save_invitee(s: Session, record: InviteeRecord) -> InviteeRecord:
    row = s.get(Invitee, record.invitee_uri)
    existing = InviteeRecord.from_dict(row.data) if row is not None else None
    merged = merge_invitee(existing, record)
    if row is None:
        row = Invitee(invitee_uri=merged.invitee_uri)
        s.add(row)
    row.email, row.status, row.data = merged.email, merged.status, merged.to_dict()
    row.updated_at = now()
    return merged


def _save_mark(s: Session, mark: NoShowMark) -> NoShowMark:
    key = "#".join(mark.key)
    row = s.get(NoShow, key)
    merged = merge_no_show(common.mark_of(row) if row is not None else None, mark)
    if row is None:
        row = NoShow(mark_key=key, no_show_uri=merged.no_show_uri, invitee_uri=merged.invitee_uri)
        s.add(row)
    row.created, row.deleted, row.marked_at = merged.created, merged.deleted, merged.marked_at
    row.updated_at = now()
    return merged


#: The contact locks of each database file, shared by every ledger of this process on it.
_LOCKS: dict[str, list[threading.Lock]] = {}
_LOCKS_GUARD = threading.Lock()


class SqliteLedger(common.SqlLedger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with _LOCKS_GUARD:
            database = str(self.engine.url.database)
            self._locks = _LOCKS.setdefault(database, [threading.Lock() for _ in range(64)])

    @contextmanager
    def contact_lock(self, key: str) -> Iterator[None]:
        with striped_lock(self._locks, key):
            yield

    def claim(self, new: Arrival, state: State | None = None) -> Claim:
        event_id, email = new.event_id, new.email
        with self.sessions.begin() as s:
            row = s.get(ProcessedEvent, event_id)
            ts = now()
            if row is not None and row.status in DONE:
                return Claim(event_id, duplicate=True, attempts=row.attempts, effects=row.effects)
            if row is None:
                row = ProcessedEvent(**vars(new), status="new", attempts=0, effects={})
                row.created_at = ts
                s.add(row)
            interrupted = row.status == "processing"
            row.status, row.attempts = "processing", row.attempts + 1
            row.claimed_at = row.updated_at = ts
            if row.payload is None:
                row.payload = new.payload
            claim = Claim(
                event_id,
                duplicate=False,
                attempts=row.attempts,
                effects=dict(row.effects),
                interrupted=interrupted,
                calls=list(row.brevo_calls or ()),
            )
            if state is not None and email:
                record, mark = state
                if record is not None:
                    claim.record = _save_invitee(s, record)
                if mark is not None:
                    _save_mark(s, mark)
                s.flush()
                claim.records, claim.marks = common.contact_state(s, email)
            return claim

    def record_effect(
        self,
        event_id: str,
        effects: dict[str, Any],
        finish: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        values: dict[str, Any] = {"effects": dict(effects)}
        if finish is not None:
            values |= {"status": finish, "last_error": None}
        self._update(event_id, values, done=finish in DONE, calls=calls)

    def finish(
        self,
        event_id: str,
        status: str,
        error: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        values = {"status": status, "last_error": error}
        self._update(event_id, values, done=status in DONE, calls=calls)

    def _update(
        self,
        event_id: str,
        values: dict[str, Any],
        *,
        done: bool,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        ts = now()
        values["updated_at"] = ts
        if calls is not None:
            values["brevo_calls"] = list(calls)
        if done:
            values["applied_at"] = ts
        with self.sessions.begin() as s:
            s.execute(
                update(ProcessedEvent).where(ProcessedEvent.event_id == event_id).values(values)
            )
