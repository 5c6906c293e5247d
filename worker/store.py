"""Database access for the worker: claims, invitee state, effects and dead letters.

Concurrency model, stated plainly:

- All work on one contact (one email) runs under :meth:`Store.contact_lock`: a Postgres session
  advisory lock on a 64-bit hash of the email (a process-local lock on SQLite, where the embedded
  mode is one process). So two workers never interleave Brevo updates for one contact, and two
  deliveries of the same event id serialise: the second sees ``applied`` and does nothing.
- A claim is a row in ``processed_events``. ``applied``/``ignored`` mean done; anything else
  (``processing`` from a worker that died, ``failed``, ``dead`` after a fix and replay) is
  processed again. ``effects`` remembers which Brevo calls already succeeded, so a retry after a
  partial success does not send the custom event again.
- A claim knows whether the attempt before it was ``interrupted`` (left ``processing``: its
  worker died). Such an attempt, or one that got no answer after sending ``POST /events``, may
  have fired the custom event; Brevo's ``POST /events`` has no idempotency key, so the pipeline
  looks the event up in Brevo before sending it again (``effects["event_in_doubt"]``). A
  database outage after Brevo accepted the event does not open a window either: the effect
  write waits, see :meth:`Store.record_effect_durably`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.db.models import DeadLetter, Invitee, NoShow, ProcessedEvent
from calendly_brevo.logs import get_logger
from calendly_brevo.state import InviteeRecord, NoShowMark, merge_invitee, merge_no_show

DONE = frozenset({"applied", "ignored"})
log = get_logger("calendly_brevo.worker")


def now() -> datetime:
    return datetime.now(UTC)


def lock_key(value: str) -> int:
    """A signed 64-bit advisory-lock key for ``value``."""
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big", signed=True)


@dataclass
class Claim:
    event_id: str
    duplicate: bool
    attempts: int
    effects: dict[str, Any] = field(default_factory=dict)
    #: With ``state=``: the merged invitee record and every record and mark of the contact,
    #: read in the claim's own transaction (one commit instead of four per event).
    record: InviteeRecord | None = None
    records: list[InviteeRecord] | None = None
    marks: list[NoShowMark] | None = None
    #: The attempt before this one never finished (its worker died, or lost the database):
    #: it may have done any of its Brevo calls.
    interrupted: bool = False


class Store:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self.engine = engine
        self.sessions = sessions
        self.is_postgres = engine.dialect.name == "postgresql"
        self._locks = [threading.Lock() for _ in range(64)]

    # -- locking -----------------------------------------------------------------------------
    @contextmanager
    def contact_lock(self, key: str) -> Iterator[None]:
        if self.is_postgres:
            k = lock_key(key)
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # no COMMIT trips
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": k})
                try:
                    yield
                finally:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": k})
                    except (OperationalError, InterfaceError):
                        # The connection died (Postgres restarted): the session lock died with it.
                        conn.invalidate()
        else:
            with self._locks[lock_key(key) % len(self._locks)]:
                yield

    # -- claims ------------------------------------------------------------------------------
    def claim(
        self,
        *,
        event_id: str,
        event_name: str,
        invitee_uri: str | None,
        email: str | None,
        payload: str,
        source: str,
        received_at: datetime | None,
        state: tuple[InviteeRecord | None, NoShowMark | None] | None = None,
    ) -> Claim:
        """Claim ``event_id`` for processing. Call under the contact lock.

        With ``state=(record, mark)`` and an email, a claim that is not a duplicate also merges
        the record and mark into the stored state and reads the contact's whole state back,
        all in the same transaction.
        """
        with self.sessions.begin() as s:
            row = s.get(ProcessedEvent, event_id, with_for_update=self.is_postgres)
            ts = now()
            if row is None:
                s.add(
                    ProcessedEvent(
                        event_id=event_id,
                        event_name=event_name,
                        invitee_uri=invitee_uri,
                        email=email,
                        status="processing",
                        source=source,
                        attempts=1,
                        effects={},
                        payload=payload,
                        received_at=received_at,
                        claimed_at=ts,
                        created_at=ts,
                        updated_at=ts,
                    )
                )
                claim = Claim(event_id, duplicate=False, attempts=1)
            elif row.status in DONE:
                return Claim(event_id, duplicate=True, attempts=row.attempts, effects=row.effects)
            else:
                interrupted = row.status == "processing"
                row.status = "processing"
                row.attempts += 1
                row.claimed_at = ts
                row.updated_at = ts
                if row.payload is None:
                    row.payload = payload
                claim = Claim(
                    event_id,
                    duplicate=False,
                    attempts=row.attempts,
                    effects=dict(row.effects),
                    interrupted=interrupted,
                )
            if state is not None and email:
                record, mark = state
                if record is not None:
                    claim.record = self._save_invitee(s, record)
                if mark is not None:
                    self._save_mark(s, mark)
                s.flush()
                claim.records, claim.marks = self._contact_state(s, email)
            return claim

    def record_effect_durably(
        self,
        event_id: str,
        effect: str,
        value: Any = True,
        *,
        finish: str | None = None,
        effects: dict[str, Any] | None = None,
        give_up_after: float = 300.0,
    ) -> None:
        """Record an effect Brevo has *already* accepted, waiting out a database outage.

        Raising here would retry the event and send its custom event a second time, so the
        write is repeated (with backoff, for up to ``give_up_after`` seconds) until it lands.
        """
        deadline = time.monotonic() + give_up_after
        wait = 0.2
        while True:
            try:
                self.record_effect(event_id, effect, value, finish=finish, effects=effects)
                return
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + wait > deadline:
                    raise
                log.warning("effect_record_retry", effect=effect, error=type(exc).__name__)
                time.sleep(wait)
                wait = min(wait * 2, 5.0)

    def record_effect(
        self,
        event_id: str,
        effect: str,
        value: Any = True,
        *,
        finish: str | None = None,
        effects: dict[str, Any] | None = None,
    ) -> None:
        """Record an effect; with ``finish``, also set the final status in the same commit.

        ``effects`` is the claim's effects so far: the caller holds the contact lock, so nobody
        else writes this row and one UPDATE does (no read first)."""
        ts = now()
        if effects is None:
            effects = self._effects_of(event_id)
        effects[effect] = value
        values: dict[str, Any] = {"effects": dict(effects), "updated_at": ts}
        if finish is not None:
            values |= {"status": finish, "last_error": None}
            if finish in DONE:
                values["applied_at"] = ts
        with self.sessions.begin() as s:
            s.execute(
                update(ProcessedEvent).where(ProcessedEvent.event_id == event_id).values(values)
            )

    def _effects_of(self, event_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            current = s.scalar(
                select(ProcessedEvent.effects).where(ProcessedEvent.event_id == event_id)
            )
        return dict(current or {})

    def finish(self, event_id: str, status: str, error: str | None = None) -> None:
        ts = now()
        values: dict[str, Any] = {"status": status, "updated_at": ts, "last_error": error}
        if status in DONE:
            values["applied_at"] = ts
        with self.sessions.begin() as s:
            s.execute(
                update(ProcessedEvent).where(ProcessedEvent.event_id == event_id).values(values)
            )

    def status_of(self, event_id: str) -> str | None:
        with self.sessions() as s:
            return s.scalar(
                select(ProcessedEvent.status).where(ProcessedEvent.event_id == event_id)
            )

    # -- invitee state -----------------------------------------------------------------------
    def save_invitee(self, record: InviteeRecord) -> InviteeRecord:
        """Merge ``record`` into the stored one (a join: any order gives the same result)."""
        with self.sessions.begin() as s:
            return self._save_invitee(s, record)

    def _save_invitee(self, s: Session, record: InviteeRecord) -> InviteeRecord:
        row = s.get(Invitee, record.invitee_uri, with_for_update=self.is_postgres)
        existing = InviteeRecord.from_dict(row.data) if row is not None else None
        merged = merge_invitee(existing, record)
        if row is None:
            s.add(
                Invitee(
                    invitee_uri=merged.invitee_uri,
                    email=merged.email,
                    status=merged.status,
                    data=merged.to_dict(),
                    updated_at=now(),
                )
            )
        else:
            row.email = merged.email
            row.status = merged.status
            row.data = merged.to_dict()
            row.updated_at = now()
        return merged

    def save_mark(self, mark: NoShowMark) -> NoShowMark:
        with self.sessions.begin() as s:
            return self._save_mark(s, mark)

    def _save_mark(self, s: Session, mark: NoShowMark) -> NoShowMark:
        key = "#".join(mark.key)
        row = s.get(NoShow, key, with_for_update=self.is_postgres)
        existing = (
            NoShowMark(
                no_show_uri=row.no_show_uri,
                invitee_uri=row.invitee_uri,
                created=row.created,
                deleted=row.deleted,
                marked_at=row.marked_at,
            )
            if row is not None
            else None
        )
        merged = merge_no_show(existing, mark)
        if row is None:
            s.add(
                NoShow(
                    mark_key=key,
                    no_show_uri=merged.no_show_uri,
                    invitee_uri=merged.invitee_uri,
                    created=merged.created,
                    deleted=merged.deleted,
                    marked_at=merged.marked_at,
                    updated_at=now(),
                )
            )
        else:
            row.created, row.deleted, row.marked_at = (
                merged.created,
                merged.deleted,
                merged.marked_at,
            )
            row.updated_at = now()
        return merged

    def contact_state(self, email: str) -> tuple[list[InviteeRecord], list[NoShowMark]]:
        with self.sessions() as s:
            return self._contact_state(s, email)

    def _contact_state(
        self, s: Session, email: str
    ) -> tuple[list[InviteeRecord], list[NoShowMark]]:
        rows = s.scalars(select(Invitee).where(Invitee.email == email)).all()
        records = [InviteeRecord.from_dict(r.data) for r in rows]
        uris = [r.invitee_uri for r in rows]
        marks = (
            [
                NoShowMark(
                    no_show_uri=m.no_show_uri,
                    invitee_uri=m.invitee_uri,
                    created=m.created,
                    deleted=m.deleted,
                    marked_at=m.marked_at,
                )
                for m in s.scalars(select(NoShow).where(NoShow.invitee_uri.in_(uris))).all()
            ]
            if uris
            else []
        )
        return records, marks

    def email_of(self, invitee_uri: str) -> str | None:
        with self.sessions() as s:
            return s.scalar(select(Invitee.email).where(Invitee.invitee_uri == invitee_uri))

    # -- dead letters ------------------------------------------------------------------------
    def dead_letter(
        self,
        *,
        event_id: str | None,
        event_name: str | None,
        reason: str,
        error: str,
        attempts: int,
        payload: str,
        source: str,
        received_at: datetime | None,
    ) -> int:
        with self.sessions.begin() as s:
            dl = DeadLetter(
                event_id=event_id,
                event_name=event_name,
                reason=reason,
                error=error[:4000],
                attempts=attempts,
                payload=payload,
                source=source,
                received_at=received_at,
                created_at=now(),
            )
            s.add(dl)
            if event_id is not None:
                s.execute(
                    update(ProcessedEvent)
                    .where(ProcessedEvent.event_id == event_id)
                    .values(status="dead", last_error=error[:4000], updated_at=now())
                )
            s.flush()
            return int(dl.id)

    def open_dead_letters(self) -> int:
        with self.sessions() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(DeadLetter)
                    .where(DeadLetter.replayed_at.is_(None))
                )
                or 0
            )
