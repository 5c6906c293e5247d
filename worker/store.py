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

On Postgres (psycopg) the hot path (lock, claim, effects, finish) is plain SQL on the DBAPI
connection, not the ORM: it was most of the worker's CPU per event. The contact lock's
connection does the work under the lock (no second pool checkout); the claim is one
``INSERT … ON CONFLICT DO UPDATE … RETURNING``, and with the state merge one read (locking the
rows merged into) and one upsert per record or mark, in one transaction; single-statement
writes run in autocommit (no ``BEGIN``/``COMMIT`` round trips). SQLite (the embedded mode) keeps
the ORM path; ``tests/worker/test_store.py`` runs the same cases on both.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.db.models import DeadLetter, Invitee, NoShow, ProcessedEvent
from calendly_brevo.logs import get_logger, scrub_error
from calendly_brevo.state import InviteeRecord, NoShowMark, merge_invitee, merge_no_show

DONE = frozenset({"applied", "ignored"})
log = get_logger("calendly_brevo.worker")


def now() -> datetime:
    return datetime.now(UTC)


def lock_key(value: str) -> int:
    """A signed 64-bit advisory-lock key for ``value``."""
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big", signed=True)


# -- Postgres statements (psycopg paramstyle) ------------------------------------------------------
#: The claim, one round trip. ``prev`` is the row as the statement's snapshot saw it (for
#: ``interrupted`` and for a duplicate's attempts and effects); the upsert locks and changes the
#: latest version, and returns nothing when that one is done: the event is a duplicate. Under
#: the contact lock both are the same row version.
_PG_CLAIM = """
WITH prev AS (
    SELECT status, attempts, effects FROM processed_events WHERE event_id = %(event_id)s
), claimed AS (
    INSERT INTO processed_events AS pe (
        event_id, event_name, invitee_uri, email, status, source, attempts, effects, payload,
        received_at, claimed_at, created_at, updated_at
    ) VALUES (
        %(event_id)s, %(event_name)s, %(invitee_uri)s, %(email)s, 'processing', %(source)s, 1,
        '{}', %(payload)s, %(received_at)s, %(ts)s, %(ts)s, %(ts)s
    )
    ON CONFLICT (event_id) DO UPDATE SET
        status = 'processing',
        attempts = pe.attempts + 1,
        claimed_at = EXCLUDED.claimed_at,
        updated_at = EXCLUDED.updated_at,
        payload = COALESCE(pe.payload, EXCLUDED.payload)
    WHERE pe.status NOT IN ('applied', 'ignored')
    RETURNING attempts, effects
)
SELECT prev.status, prev.attempts, prev.effects, claimed.attempts, claimed.effects
FROM (SELECT 1) AS one LEFT JOIN prev ON true LEFT JOIN claimed ON true
"""

#: What the state merge reads, one round trip: the stored record of the event's invitee and
#: its no-show mark, both locked for the merge (kinds 1 and 3), every other record of the
#: contact (2), and every other mark of the contact's invitees (4, a superset: filtered after
#: the merge, when the invitee's final email is known).
_PG_STATE = """
WITH target AS (
    SELECT invitee_uri, data FROM invitees WHERE invitee_uri = %(uri)s FOR UPDATE
), target_mark AS (
    SELECT invitee_uri, mark_key, no_show_uri, created, deleted, marked_at
    FROM no_shows WHERE mark_key = %(mark_key)s FOR UPDATE
)
SELECT 1, invitee_uri, data, NULL::text, NULL::text, NULL::bool, NULL::bool, NULL::text
FROM target
UNION ALL
SELECT 2, invitee_uri, data, NULL, NULL, NULL, NULL, NULL FROM invitees
WHERE email = %(email)s AND invitee_uri IS DISTINCT FROM %(uri)s
UNION ALL
SELECT 3, invitee_uri, NULL, mark_key, no_show_uri, created, deleted, marked_at FROM target_mark
UNION ALL
SELECT 4, n.invitee_uri, NULL, n.mark_key, n.no_show_uri, n.created, n.deleted, n.marked_at
FROM no_shows AS n
WHERE (
    n.invitee_uri = %(uri)s
    OR n.invitee_uri IN (SELECT invitee_uri FROM invitees WHERE email = %(email)s)
) AND n.mark_key IS DISTINCT FROM %(mark_key)s
"""

_PG_SAVE_INVITEE = """
INSERT INTO invitees (invitee_uri, email, status, data, updated_at)
VALUES (%(uri)s, %(email)s, %(status)s, %(data)s::json, %(ts)s)
ON CONFLICT (invitee_uri) DO UPDATE SET
    email = EXCLUDED.email, status = EXCLUDED.status, data = EXCLUDED.data,
    updated_at = EXCLUDED.updated_at
"""

_PG_SAVE_MARK = """
INSERT INTO no_shows (mark_key, no_show_uri, invitee_uri, created, deleted, marked_at, updated_at)
VALUES (%(key)s, %(no_show_uri)s, %(invitee_uri)s, %(created)s, %(deleted)s, %(marked_at)s, %(ts)s)
ON CONFLICT (mark_key) DO UPDATE SET
    created = EXCLUDED.created, deleted = EXCLUDED.deleted, marked_at = EXCLUDED.marked_at,
    updated_at = EXCLUDED.updated_at
"""

#: ``record_effect``: by whether it finishes the event (``None``: no) and as done (``True``).
_PG_RECORD_EFFECT = {
    None: """
UPDATE processed_events SET effects = %(effects)s::json, updated_at = %(ts)s
WHERE event_id = %(event_id)s
""",
    False: """
UPDATE processed_events SET effects = %(effects)s::json, updated_at = %(ts)s,
    status = %(status)s, last_error = %(error)s
WHERE event_id = %(event_id)s
""",
    True: """
UPDATE processed_events SET effects = %(effects)s::json, updated_at = %(ts)s,
    status = %(status)s, last_error = %(error)s, applied_at = %(ts)s
WHERE event_id = %(event_id)s
""",
}
#: ``finish``: by whether the status is a done one.
_PG_FINISH = {
    False: """
UPDATE processed_events SET updated_at = %(ts)s, status = %(status)s, last_error = %(error)s
WHERE event_id = %(event_id)s
""",
    True: """
UPDATE processed_events SET updated_at = %(ts)s, status = %(status)s, last_error = %(error)s,
    applied_at = %(ts)s
WHERE event_id = %(event_id)s
""",
}


def _mark_of(row: Any) -> NoShowMark:
    return NoShowMark(
        no_show_uri=row.no_show_uri,
        invitee_uri=row.invitee_uri,
        created=row.created,
        deleted=row.deleted,
        marked_at=row.marked_at,
    )


#: The columns :meth:`Store._pg_event_row` reads (a Literal: the SQL is built from it).
_EventColumns = Literal["status", "effects", "attempts, effects"]


@dataclass(frozen=True)
class _Arrival:
    """What a claim stores about the event when it first sees it."""

    event_id: str
    event_name: str
    invitee_uri: str | None
    email: str | None
    payload: str
    source: str
    received_at: datetime | None


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
        #: Plain SQL on Postgres through psycopg; anything else (SQLite) goes through the ORM.
        self._fast = self.is_postgres and engine.dialect.driver == "psycopg"
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._locks = [threading.Lock() for _ in range(64)]
        #: The contact lock's connection, for the work this thread does under the lock.
        self._held = threading.local()
        self._dbapi_error: type[Exception] = getattr(
            engine.dialect.loaded_dbapi, "Error", Exception
        )

    # -- locking -----------------------------------------------------------------------------
    @contextmanager
    def contact_lock(self, key: str) -> Iterator[None]:
        if self.is_postgres:
            k = lock_key(key)
            with self._autocommit.connect() as conn:  # autocommit: no COMMIT round trips
                self._run(conn, "SELECT pg_advisory_lock(%(k)s)", {"k": k})
                outer = getattr(self._held, "conn", None)
                self._held.conn = conn
                try:
                    yield
                finally:
                    self._held.conn = outer
                    if not conn.invalidated:  # else it died, and the session lock with it
                        try:
                            self._run(conn, "SELECT pg_advisory_unlock(%(k)s)", {"k": k})
                        except (OperationalError, InterfaceError):
                            # The connection died (Postgres restarted): the lock died with it.
                            conn.invalidate()
        else:
            with self._locks[lock_key(key) % len(self._locks)]:
                yield

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """An autocommit connection: the contact lock's when this thread holds one (and it is
        alive), else one from the pool."""
        held: Connection | None = getattr(self._held, "conn", None)
        if held is not None and not held.invalidated:
            yield held
            return
        with self._autocommit.connect() as conn:
            yield conn

    def _run(self, conn: Connection, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Execute ``sql`` on the psycopg connection under ``conn`` and return the cursor
        (other drivers: through SQLAlchemy).

        SQLAlchemy's per-statement bookkeeping (execution context, result metadata) costs more
        CPU than these small statements themselves, so they skip it. Errors still come out as
        SQLAlchemy's: a connection that broke is handed to SQLAlchemy (which invalidates it,
        and the pool with it, as for any statement of its own) before the error is raised."""
        if not self._fast:
            return conn.exec_driver_sql(sql, params)
        dbapi: Any = conn.connection.driver_connection
        cursor = dbapi.cursor()
        try:
            return cursor.execute(sql, params)
        except self._dbapi_error as exc:
            if dbapi.broken or dbapi.closed:
                conn.exec_driver_sql("SELECT 1")  # raises SQLAlchemy's disconnect error
            raise DBAPIError.instance(
                sql, params, exc, self._dbapi_error, dialect=self.engine.dialect
            ) from exc

    def _pg_event_row(self, conn: Connection, columns: _EventColumns, event_id: str) -> Any:
        """``columns`` of the event's ``processed_events`` row, or None."""
        where = "FROM processed_events WHERE event_id = %(event_id)s"
        sql = f"SELECT {columns} {where}"  # columns is a Literal, never input
        return self._run(conn, sql, {"event_id": event_id}).fetchone()

    @contextmanager
    def _transaction(self, conn: Connection) -> Iterator[Connection]:
        """An explicit transaction on an autocommit connection."""
        self._run(conn, "BEGIN")
        try:
            yield conn
        except BaseException:
            if not conn.invalidated:  # else the transaction died with the connection
                with suppress(DBAPIError):  # the error that got us here is the one to raise
                    self._run(conn, "ROLLBACK")
            raise
        self._run(conn, "COMMIT")

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
        new = _Arrival(event_id, event_name, invitee_uri, email, payload, source, received_at)
        if not self._fast:
            return self._orm_claim(new, state)
        with self._connection() as conn:
            if state is None or not email:
                return self._pg_claim(conn, new)  # one statement: atomic on its own
            with self._transaction(conn):
                claim = self._pg_claim(conn, new)
                if not claim.duplicate:
                    self._pg_merge_state(conn, claim, email, *state)
                return claim

    def _pg_claim(self, conn: Connection, new: _Arrival) -> Claim:
        event_id = new.event_id
        prev_status, prev_attempts, prev_effects, attempts, effects = self._run(
            conn, _PG_CLAIM, {**vars(new), "ts": now()}
        ).fetchone()
        if attempts is None:  # done: a duplicate
            if prev_attempts is None:  # done by someone else since the snapshot (no lock held)
                prev_attempts, prev_effects = self._pg_event_row(
                    conn, "attempts, effects", event_id
                )
            return Claim(event_id, duplicate=True, attempts=prev_attempts, effects=prev_effects)
        return Claim(
            event_id,
            duplicate=False,
            attempts=attempts,
            effects=dict(effects or {}),
            interrupted=prev_status == "processing",
        )

    def _pg_merge_state(
        self,
        conn: Connection,
        claim: Claim,
        email: str,
        record: InviteeRecord | None,
        mark: NoShowMark | None,
    ) -> None:
        """:meth:`_save_invitee`, :meth:`_save_mark` and :meth:`_contact_state` in two
        statements: the read (locking the rows merged into), then the writes."""
        uri = record.invitee_uri if record is not None else None
        mark_key = "#".join(mark.key) if mark is not None else None
        rows = self._run(
            conn, _PG_STATE, {"uri": uri, "email": email, "mark_key": mark_key}
        ).fetchall()
        stored: InviteeRecord | None = None
        stored_mark: NoShowMark | None = None
        records: list[InviteeRecord] = []
        marks: list[NoShowMark] = []
        for kind, inv_uri, data, _key, ns_uri, created, deleted, marked_at in rows:
            if kind == 1:
                stored = InviteeRecord.from_dict(data)
            elif kind == 2:
                records.append(InviteeRecord.from_dict(data))
            else:
                m = NoShowMark(ns_uri, inv_uri, created, deleted, marked_at)
                if kind == 3:
                    stored_mark = m
                else:
                    marks.append(m)
        ts = now()
        if record is not None:
            merged = merge_invitee(stored, record)
            data = merged.to_dict()
            self._run(
                conn,
                _PG_SAVE_INVITEE,
                {
                    "uri": merged.invitee_uri,
                    "email": merged.email,
                    "status": merged.status,
                    "data": json.dumps(data),
                    "ts": ts,
                },
            )
            claim.record = merged
            if merged.email == email:  # as read back after the write
                records.append(InviteeRecord.from_dict(data))
        if mark is not None:
            merged_mark = merge_no_show(stored_mark, mark)
            self._run(
                conn,
                _PG_SAVE_MARK,
                {
                    "key": mark_key,
                    "no_show_uri": merged_mark.no_show_uri,
                    "invitee_uri": merged_mark.invitee_uri,
                    "created": merged_mark.created,
                    "deleted": merged_mark.deleted,
                    "marked_at": merged_mark.marked_at,
                    "ts": ts,
                },
            )
            marks.append(merged_mark)
        uris = {r.invitee_uri for r in records}
        claim.records = records
        claim.marks = [m for m in marks if m.invitee_uri in uris]

    def _orm_claim(
        self, new: _Arrival, state: tuple[InviteeRecord | None, NoShowMark | None] | None
    ) -> Claim:
        event_id = new.event_id
        with self.sessions.begin() as s:
            row = s.get(ProcessedEvent, event_id, with_for_update=self.is_postgres)
            ts = now()
            if row is None:
                s.add(
                    ProcessedEvent(
                        **vars(new),
                        status="processing",
                        attempts=1,
                        effects={},
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
                    row.payload = new.payload
                claim = Claim(
                    event_id,
                    duplicate=False,
                    attempts=row.attempts,
                    effects=dict(row.effects),
                    interrupted=interrupted,
                )
            if state is not None and new.email:
                record, mark = state
                if record is not None:
                    claim.record = self._save_invitee(s, record)
                if mark is not None:
                    self._save_mark(s, mark)
                s.flush()
                claim.records, claim.marks = self._contact_state(s, new.email)
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
        if self._fast:
            sql = _PG_RECORD_EFFECT[None if finish is None else finish in DONE]
            params = {
                "effects": json.dumps(effects),
                "ts": ts,
                "status": finish,
                "error": None,
                "event_id": event_id,
            }
            with self._connection() as conn:
                self._run(conn, sql, params)
            return
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
        if self._fast:
            with self._connection() as conn:
                found = self._pg_event_row(conn, "effects", event_id)
            current = found[0] if found else None
        else:
            with self.sessions() as s:
                current = s.scalar(
                    select(ProcessedEvent.effects).where(ProcessedEvent.event_id == event_id)
                )
        return dict(current or {})

    def finish(self, event_id: str, status: str, error: str | None = None) -> None:
        ts = now()
        if self._fast:
            params = {"ts": ts, "status": status, "error": error, "event_id": event_id}
            with self._connection() as conn:
                self._run(conn, _PG_FINISH[status in DONE], params)
            return
        values: dict[str, Any] = {"status": status, "updated_at": ts, "last_error": error}
        if status in DONE:
            values["applied_at"] = ts
        with self.sessions.begin() as s:
            s.execute(
                update(ProcessedEvent).where(ProcessedEvent.event_id == event_id).values(values)
            )

    def status_of(self, event_id: str) -> str | None:
        if self._fast:
            with self._connection() as conn:
                found = self._pg_event_row(conn, "status", event_id)
            return str(found[0]) if found else None
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
        existing = _mark_of(row) if row is not None else None
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
                _mark_of(m)
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
        """Store a dead letter; returns its id. An event has at most one open dead letter: a
        later failure of the same event (a duplicate delivery, a replay that fails again)
        updates it with the new cause instead of adding a second row. The error text is
        scrubbed: no quoted input values, emails or phone numbers (the payload keeps the data
        until retention prunes it)."""
        error = scrub_error(error)
        with self.sessions.begin() as s:
            if event_id is not None:
                dl = s.scalars(
                    select(DeadLetter)
                    .where(DeadLetter.event_id == event_id, DeadLetter.replayed_at.is_(None))
                    .order_by(DeadLetter.id.desc())
                    .limit(1)
                    .with_for_update()
                ).first()
                if dl is not None:
                    dl.reason, dl.error, dl.attempts = reason, error[:4000], attempts
                    dl.payload, dl.source, dl.created_at = payload, source, now()
                    self._mark_dead(s, event_id, error)
                    return int(dl.id)
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
                self._mark_dead(s, event_id, error)
            s.flush()
            return int(dl.id)

    @staticmethod
    def _mark_dead(s: Session, event_id: str, error: str) -> None:
        s.execute(
            update(ProcessedEvent)
            .where(ProcessedEvent.event_id == event_id)
            .values(status="dead", last_error=error[:4000], updated_at=now())
        )

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
