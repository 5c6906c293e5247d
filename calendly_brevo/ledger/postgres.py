"""The Postgres ledger (psycopg 3), for production: any number of worker processes.

- The contact lock is a Postgres session advisory lock on a 64-bit hash of the key, so two
  workers anywhere never interleave Brevo updates for one contact, and two deliveries of one
  event id serialise: the second sees ``applied`` and does nothing.
- A claim knows whether the attempt before it was ``interrupted`` (left ``processing``: its
  worker died). Such an attempt may have fired the custom event; the pipeline looks it up in
  Brevo before sending it again. A database outage after Brevo accepted the event does not open
  a window either: the effect write waits it out (:func:`.base.record_durably`).

The hot path (lock, claim, effects, finish) is plain SQL on the DBAPI connection, not the ORM:
it was most of the worker's CPU per event (``benchmarks/RESULTS.md``). The contact locks are
taken on one session per process (:mod:`.pg_locks`) and the work under them on pooled
connections, so a worker thread waiting on Brevo holds no connection; the claim is one
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` (:mod:`.postgres_sql`), and with the state merge
one read (locking the rows merged into) and one upsert per record or mark, in one transaction;
single-statement writes run in autocommit (no ``BEGIN``/``COMMIT`` round trips), and so does
the tombstone check every invitee event makes. The rest (dead letters, writing tombstones,
projections) goes through the ORM of :mod:`.common`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.ledger import postgres_sql as sql
from calendly_brevo.ledger.base import (
    DONE,
    Arrival,
    Claim,
    PushedProjection,
    State,
    lock_key,
    now,
    tombstone_keys,
)
from calendly_brevo.ledger.common import SqlLedger, pushed_from
from calendly_brevo.ledger.pg_locks import LockSession
from calendly_brevo.state import InviteeRecord, NoShowMark, merge_invitee, merge_no_show


class PostgresLedger(SqlLedger):
    def __init__(self, engine: Engine, sessions: sessionmaker[Session] | None = None) -> None:
        if engine.dialect.driver != "psycopg":
            raise ValueError(f"the Postgres ledger needs psycopg 3, not {engine.dialect.driver}")
        super().__init__(engine, sessions)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        #: The process's contact locks, and per thread whether the ones it holds are held.
        self._locks = LockSession(engine)
        self._held = threading.local()
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    # -- connections -----------------------------------------------------------------------------
    @contextmanager
    def contact_lock(self, key: str) -> Iterator[None]:
        """On the process's one lock session (:mod:`.pg_locks`): holding a contact's lock
        holds no connection, so a worker's threads are not bounded by Postgres's."""
        with self._locks.hold(lock_key(key)) as alive:
            held: list[Callable[[], bool] | None] = self._held.__dict__.setdefault("locks", [])
            held.append(alive)
            try:
                yield
            finally:
                held.pop()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """An autocommit connection from the pool. Under a contact lock whose session ended,
        the first statement raises ``OperationalError``, as one on the lock's dead connection
        did when the work ran there: the attempt ends (its event is retried, claimed as
        interrupted) unless that statement was an effect write, which
        :func:`.base.record_durably` repeats until it lands (Brevo has taken the effect)."""
        held: list[Callable[[], bool] | None] | None = self._held.__dict__.get("locks")
        if held and not all(alive() for alive in held if alive is not None):
            held[:] = [None] * len(held)  # failed once: the rest run on the pool
            # A session that ended is most often Postgres restarting: the pool's idle
            # connections went with it. Drop them, as SQLAlchemy does on a disconnect, so the
            # attempt's own record of its failure lands (else its retry is taken for an
            # interrupted one, and its custom event for one in doubt).
            self.engine.pool.dispose()
            raise OperationalError(
                "contact lock", None, LockLost("the session holding the lock ended")
            )
        with self._autocommit.connect() as conn:
            yield conn

    def _run(self, conn: Connection, statement: str, params: dict[str, Any] | None = None) -> Any:
        """Execute on the psycopg connection under ``conn`` and return the cursor.

        SQLAlchemy's per-statement bookkeeping (execution context, result metadata) costs more
        CPU than these small statements themselves, so they skip it. Errors still come out as
        SQLAlchemy's: a connection that broke is handed to SQLAlchemy (which invalidates it,
        and the pool with it, as for any statement of its own) before the error is raised."""
        dbapi: Any = conn.connection.driver_connection
        cursor = dbapi.cursor()
        try:
            return cursor.execute(statement, params)
        except self._dbapi_error as exc:
            if dbapi.broken or dbapi.closed:
                conn.exec_driver_sql("SELECT 1")  # raises SQLAlchemy's disconnect error
            raise DBAPIError.instance(
                statement, params, exc, self._dbapi_error, dialect=self.engine.dialect
            ) from exc

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

    # -- claims ----------------------------------------------------------------------------------
    def claim(self, new: Arrival, state: State | None = None) -> Claim:
        email = new.email
        with self._connection() as conn:
            if state is None or not email:
                return self._claim(conn, new)  # one statement: atomic on its own
            with self._transaction(conn):
                claim = self._claim(conn, new)
                if not claim.duplicate:
                    self._merge_state(conn, claim, email, *state)
                return claim

    def _claim(self, conn: Connection, new: Arrival) -> Claim:
        event_id = new.event_id
        prev_status, prev_attempts, prev_effects, attempts, effects, calls = self._run(
            conn, sql.PG_CLAIM, {**vars(new), "ts": now()}
        ).fetchone()
        if attempts is None:  # done: a duplicate
            if prev_attempts is None:  # done by someone else since the snapshot (no lock held)
                prev_attempts, prev_effects = self._run(
                    conn, sql.PG_ATTEMPTS_EFFECTS, {"event_id": event_id}
                ).fetchone()
            return Claim(event_id, duplicate=True, attempts=prev_attempts, effects=prev_effects)
        return Claim(
            event_id,
            duplicate=False,
            attempts=attempts,
            effects=dict(effects or {}),
            interrupted=prev_status == "processing",
            calls=list(calls or ()),
        )

    def _merge_state(
        self,
        conn: Connection,
        claim: Claim,
        email: str,
        record: InviteeRecord | None,
        mark: NoShowMark | None,
    ) -> None:
        """Merge and read back the contact's state in two statements: the read (locking the
        rows merged into), then the writes."""
        uri = record.invitee_uri if record is not None else None
        mark_key = "#".join(mark.key) if mark is not None else None
        rows = self._run(
            conn, sql.PG_STATE, {"uri": uri, "email": email, "mark_key": mark_key}
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
            saved = {"uri": merged.invitee_uri, "email": merged.email, "status": merged.status}
            self._run(conn, sql.PG_SAVE_INVITEE, saved | {"data": json.dumps(data), "ts": ts})
            claim.record = merged
            if merged.email == email:  # as read back after the write
                records.append(InviteeRecord.from_dict(data))
        if mark is not None:
            merged_mark = merge_no_show(stored_mark, mark)
            params: dict[str, Any] = {
                "key": mark_key,
                "no_show_uri": merged_mark.no_show_uri,
                "invitee_uri": merged_mark.invitee_uri,
                "created": merged_mark.created,
                "deleted": merged_mark.deleted,
                "marked_at": merged_mark.marked_at,
                "ts": ts,
            }
            self._run(conn, sql.PG_SAVE_MARK, params)
            marks.append(merged_mark)
        uris = {r.invitee_uri for r in records}
        claim.records = records
        claim.marks = [m for m in marks if m.invitee_uri in uris]

    # -- effects and outcomes --------------------------------------------------------------------
    def record_effect(
        self,
        event_id: str,
        effects: dict[str, Any],
        finish: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        """One UPDATE, no read first (see :meth:`Ledger.record_effect`)."""
        with self._connection() as conn:
            statement = sql.PG_RECORD_EFFECT[None if finish is None else finish in DONE]
            params = {"effects": json.dumps(effects), "ts": now(), "status": finish}
            params |= {"error": None, "event_id": event_id, "calls": _json(calls)}
            self._run(conn, statement, params)

    def finish(
        self,
        event_id: str,
        status: str,
        error: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        params = {"ts": now(), "status": status, "error": error, "event_id": event_id}
        params["calls"] = _json(calls)
        with self._connection() as conn:
            self._run(conn, sql.PG_FINISH[status in DONE], params)

    # -- tombstones (asked for every invitee event; written rarely, through the ORM) --------------
    def is_tombstoned(self, *, email: str | None = None, invitee_uri: str | None = None) -> bool:
        keys = tombstone_keys(email=email, invitee_uri=invitee_uri)
        if not keys:
            return False
        with self._connection() as conn:
            return self._run(conn, sql.PG_TOMBSTONED, {"keys": keys}).fetchone() is not None

    # -- pushed projections (the worker writes one per applied event) ----------------------------
    def last_pushed(self, email: str) -> PushedProjection | None:
        with self._connection() as conn:
            row = self._run(conn, sql.PG_LAST_PUSHED, {"email": email}).fetchone()
        return None if row is None else pushed_from(*row)  # PG_LAST_PUSHED's column order

    def record_pushed(self, pushed: PushedProjection) -> None:
        params = {
            **vars(pushed),
            "attributes": json.dumps(dict(pushed.attributes)),
            "list_ids": json.dumps(list(pushed.list_ids)),
        }
        with self._connection() as conn:
            self._run(conn, sql.PG_RECORD_PUSHED, params)


class LockLost(Exception):
    """The session that held a contact lock ended while the lock was held."""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
