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

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from psycopg.pq import TransactionStatus
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
    tombstone_key,
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
            self._unpin(invalidate=True)  # checked out, so not among the pool's idle ones
            raise OperationalError(
                "contact lock", None, LockLost("the session holding the lock ended")
            )
        if self._held.__dict__.get("pinning"):
            pinned: Connection | None = self._held.__dict__.get("pinned")
            if pinned is None or pinned.invalidated or pinned.closed:
                self._unpin()  # one that broke goes back (SQLAlchemy has discarded it)
                pinned = self._held.pinned = self._autocommit.connect()
            yield pinned
            return
        with self._autocommit.connect() as conn:
            yield conn

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Every statement this thread runs in the block on one pooled connection, checked out
        at the first and kept until the block ends or :meth:`released`: the group
        pass runs several round trips a batch, and a checkout (SQLAlchemy's connection, the
        pool's bookkeeping, its reset on return) cost about as much CPU as a statement. A
        pinned connection that broke is replaced at the next statement, so a write waiting out
        an outage reconnects as it would unpinned."""
        if self._held.__dict__.get("pinning"):
            yield
            return
        self._held.pinning = True
        try:
            yield
        finally:
            self._held.pinning = False
            self._unpin()

    @contextmanager
    def released(self) -> Iterator[None]:
        """In a :meth:`pinned` block, no connection held during this one (a Brevo call, which
        can wait seconds for a token or an answer: the pool is sized for statements, not for
        them); the next statement checks one out again."""
        self._unpin()
        yield

    def _unpin(self, *, invalidate: bool = False) -> None:
        conn: Connection | None = self._held.__dict__.get("pinned")
        self._held.pinned = None
        if conn is None:
            return
        if invalidate and not conn.invalidated:
            with suppress(Exception):  # it is being thrown away either way
                conn.invalidate()
        conn.close()

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
            self._raise(conn, exc, statement, params)

    @contextmanager
    def _pipeline(self, conn: Connection) -> Iterator[Callable[[str, Any], Any]]:
        """A block of statements sent without waiting for their answers (psycopg's pipeline
        mode): it yields ``run(statement, params)``, which returns the statement's cursor; the
        first ``fetch`` of one reads every answer up to it, in one round trip, and the block's
        end reads the rest. The server runs them in order and stops at the first that fails,
        which is raised as :meth:`_run` raises it (the ones after it did not run)."""
        dbapi: Any = conn.connection.driver_connection
        sent: list[tuple[str, Any]] = []

        def run(statement: str, params: Any) -> Any:
            sent.append((statement, params))
            return dbapi.cursor().execute(statement, params)

        try:
            with dbapi.pipeline():
                yield run
        except self._dbapi_error as exc:
            text = ";\n".join(statement for statement, _params in sent)
            self._raise(conn, exc, text, [params for _statement, params in sent])

    def _raise(self, conn: Connection, exc: Exception, statement: str, params: Any) -> NoReturn:
        """``exc`` (psycopg's) as SQLAlchemy's error: a connection that broke is handed to
        SQLAlchemy first (which invalidates it, and the pool with it)."""
        dbapi: Any = conn.connection.driver_connection
        if dbapi.broken or dbapi.closed:
            conn.exec_driver_sql("SELECT 1")  # raises SQLAlchemy's disconnect error
        raise DBAPIError.instance(
            statement, params, exc, self._dbapi_error, dialect=self.engine.dialect
        ) from exc

    @contextmanager
    def _transaction(self, conn: Connection) -> Iterator[Connection]:
        """An explicit transaction on an autocommit connection."""
        self._run(conn, "BEGIN")
        with self._rolled_back(conn):
            yield conn
        self._run(conn, "COMMIT")

    @contextmanager
    def _rolled_back(self, conn: Connection) -> Iterator[None]:
        """The transaction open on ``conn``, if any, rolled back when the block raises."""
        try:
            yield
        except BaseException:
            if not conn.invalidated:  # else the transaction died with the connection
                dbapi: Any = conn.connection.driver_connection
                if dbapi.info.transaction_status != TransactionStatus.IDLE:
                    with suppress(DBAPIError):  # the error that got us here is the one to raise
                        self._run(conn, "ROLLBACK")
            raise

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
        mark_key = _mark_key(mark)
        rows = self._run(
            conn, sql.PG_STATE, {"uri": uri, "email": email, "mark_key": mark_key}
        ).fetchall()
        saved, mark_params = self._fold(claim, email, record, mark, rows)
        if saved is not None:
            self._run(conn, sql.PG_SAVE_INVITEE, saved)
        if mark_params is not None:
            self._run(conn, sql.PG_SAVE_MARK, mark_params)

    def _fold(
        self,
        claim: Claim,
        email: str,
        record: InviteeRecord | None,
        mark: NoShowMark | None,
        rows: list[Any],
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Merge ``record`` and ``mark`` into the stored state ``rows`` (:data:`.sql.PG_STATE`'s)
        and set the claim's state; the parameters of the invitee and mark writes."""
        mark_key = _mark_key(mark)
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
        saved: dict[str, Any] | None = None
        params: dict[str, Any] | None = None
        if record is not None:
            merged = merge_invitee(stored, record)
            data = merged.to_dict()
            saved = {"uri": merged.invitee_uri, "email": merged.email, "status": merged.status}
            saved |= {"data": _dumps(data), "ts": ts}
            claim.record = merged
            if merged.email == email:  # as read back after the write
                records.append(InviteeRecord.from_dict(data))
        if mark is not None:
            merged_mark = merge_no_show(stored_mark, mark)
            params = {
                "key": mark_key,
                "no_show_uri": merged_mark.no_show_uri,
                "invitee_uri": merged_mark.invitee_uri,
                "created": merged_mark.created,
                "deleted": merged_mark.deleted,
                "marked_at": merged_mark.marked_at,
                "ts": ts,
            }
            marks.append(merged_mark)
        uris = {r.invitee_uri for r in records}
        claim.records = records
        claim.marks = [m for m in marks if m.invitee_uri in uris]
        return saved, params

    # -- a group of events in one pass (:mod:`worker.group`) -------------------------------------
    @contextmanager
    def free_contact_locks(self, keys: Iterable[str]) -> Iterator[set[str]]:
        """Those of ``keys`` nobody holds now, held together for the block (one statement);
        the work on the others takes :meth:`contact_lock` after it."""
        by_int: dict[int, str] = {}
        for key in keys:
            by_int.setdefault(lock_key(key), key)  # a hash collision: the second waits its turn
        with self._locks.hold_free(by_int) as (held, alive):
            stack: list[Callable[[], bool] | None] = self._held.__dict__.setdefault("locks", [])
            stack.append(alive)
            try:
                yield {by_int[k] for k in held}
            finally:
                stack.pop()

    def claim_fresh(self, items: Sequence[tuple[Arrival, State]]) -> FreshClaims:
        """Claim those of ``items`` never stored before and whose invitee was not forgotten,
        merging each one's state (as :meth:`claim` with ``state=``), and read what was last
        pushed to each one's contact, in two round trips: the reads, ``BEGIN``, the claim and
        the state read (locking the rows merged into) go together, then the state writes and
        ``COMMIT``. Call with every item's contact lock held and one item per contact and per
        invitee. An event stored before (a retry, a redelivery) or of a forgotten invitee is
        not claimed: it goes the one-event way."""
        ts = now()
        arrivals = [arrival for arrival, _state in items]
        keys = [
            tombstone_key("invitee", a.invitee_uri) if a.invitee_uri else None for a in arrivals
        ]
        tombstones = {
            k: a.invitee_uri for k, a in zip(keys, arrivals, strict=True) if a.invitee_uri
        }
        params: dict[str, Any] = {"ts": ts, "tombstones": keys}
        for name, attr in _ARRIVAL_COLUMNS:
            params[name] = [getattr(a, attr) for a in arrivals]
        emails = sorted({a.email for a in arrivals if a.email})
        states = {
            "uris": [st[0].invitee_uri for _a, st in items if st[0] is not None],
            "emails": emails,
            "mark_keys": [k for _a, st in items if (k := _mark_key(st[1])) is not None],
        }
        with (
            self._connection() as conn,
            self._rolled_back(conn),
            self._pipeline(conn) as run,
        ):
            forgotten = run(sql.PG_TOMBSTONES, {"keys": list(tombstones)})
            pushed = run(sql.PG_LAST_PUSHED_MANY, {"emails": emails})
            run("BEGIN", None)
            claimed = run(sql.PG_CLAIM_FRESH, params)
            read = run(sql.PG_STATES, states)
            got = FreshClaims(  # the first round trip: every answer up to the state read
                forgotten={tombstones[row[0]] for row in forgotten.fetchall()},
                pushed={row[0]: pushed_from(*row) for row in pushed.fetchall()},
            )
            fresh = {row[0] for row in claimed.fetchall()}
            found = read.fetchall()
            invitees: list[dict[str, Any]] = []
            marks: list[dict[str, Any]] = []
            for arrival, (record, mark) in items:
                if arrival.event_id not in fresh:
                    continue
                claim = got.claims[arrival.event_id] = Claim(arrival.event_id, False, attempts=1)
                if not arrival.email:
                    continue
                rows = _state_rows(found, arrival.email, record, mark)
                saved, mark_params = self._fold(claim, arrival.email, record, mark, rows)
                invitees += [saved] if saved is not None else []
                marks += [mark_params] if mark_params is not None else []
            if invitees:
                columns = {"uris": "uri", "emails": "email", "statuses": "status", "data": "data"}
                many = {name: [row[key] for row in invitees] for name, key in columns.items()}
                run(sql.PG_SAVE_INVITEES, many | {"ts": ts})
            for mark_params in marks:  # a no-show: a few in a group at most
                run(sql.PG_SAVE_MARK, mark_params)
            run("COMMIT", None)  # the second round trip: the block's end
        return got

    def record_effects(
        self,
        records: Sequence[tuple[str, dict[str, Any], str | None, list[Any] | None]],
        pushed: Sequence[PushedProjection] = (),
    ) -> None:
        """:meth:`record_effect` of many events in one statement: ``(event_id, effects,
        finish, calls)`` each; with ``pushed`` (the projections Brevo took for them),
        :meth:`record_pushed` of each of those (one per contact) in the same statement (both can
        be repeated)."""
        if not records:
            return
        params: dict[str, Any] = {
            "ts": now(),
            "ids": [r[0] for r in records],
            "effects": [_dumps(r[1]) for r in records],
            "statuses": [r[2] for r in records],
            "calls": [_json(r[3]) for r in records],
        }
        statement = sql.PG_RECORD_EFFECTS
        if pushed:
            params |= _pushed_params(pushed)
            statement = sql.PG_RECORD_EFFECTS_AND_PUSHED
        with self._connection() as conn:
            self._run(conn, statement, params)

    def last_pushed_many(self, emails: Iterable[str]) -> dict[str, PushedProjection]:
        wanted = list(set(emails))
        if not wanted:
            return {}
        with self._connection() as conn:
            rows = self._run(conn, sql.PG_LAST_PUSHED_MANY, {"emails": wanted}).fetchall()
        return {row[0]: pushed_from(*row) for row in rows}

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
            params = {"effects": _dumps(effects), "ts": now(), "status": finish}
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
            "attributes": _dumps(dict(pushed.attributes)),
            "list_ids": _dumps(list(pushed.list_ids)),
        }
        with self._connection() as conn:
            self._run(conn, sql.PG_RECORD_PUSHED, params)


#: PG_CLAIM_FRESH's arrays and the :class:`Arrival` attribute each holds.
_ARRIVAL_COLUMNS = (
    ("ids", "event_id"),
    ("names", "event_name"),
    ("uris", "invitee_uri"),
    ("emails", "email"),
    ("sources", "source"),
    ("payloads", "payload"),
    ("keys", "signature_key"),
    ("received", "received_at"),
)


def _mark_key(mark: NoShowMark | None) -> str | None:
    return "#".join(mark.key) if mark is not None else None


def _state_rows(
    found: list[Any], email: str, record: InviteeRecord | None, mark: NoShowMark | None
) -> list[Any]:
    """One event's share of :data:`.sql.PG_STATES`' rows, as :data:`.sql.PG_STATE` gives them
    (``kind, invitee_uri, data, mark_key, no_show_uri, created, deleted, marked_at``)."""
    uri = record.invitee_uri if record is not None else None
    mark_key = _mark_key(mark)
    theirs = {row[1] for row in found if row[0] == 2 and row[2] == email}
    rows: list[Any] = []
    for kind, inv_uri, row_email, *rest in found:
        if kind == 1:
            keep = inv_uri == uri
        elif kind == 2:
            keep = row_email == email and inv_uri != uri
        elif kind == 3:
            keep = rest[1] == mark_key
        else:
            keep = rest[1] != mark_key and (inv_uri == uri or inv_uri in theirs)
        if keep:
            rows.append((kind, inv_uri, *rest))
    return rows


class LockLost(Exception):
    """The session that held a contact lock ended while the lock was held."""


def _json(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _dumps(value: Any) -> str:
    """``value`` as JSON text for a ``json`` column: orjson, about five times faster than the
    standard library's encoder (which was 7 % of a busy worker's CPU with the wire's)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _pushed_params(pushed: Sequence[PushedProjection]) -> dict[str, Any]:
    """:data:`.sql.PG_RECORD_PUSHED_MANY`'s parameters."""
    return {
        "emails": [p.email for p in pushed],
        "attributes": [_dumps(dict(p.attributes)) for p in pushed],
        "list_ids": [_dumps(list(p.list_ids)) for p in pushed],
        "hashes": [p.projection_hash for p in pushed],
        "fingerprints": [p.mapping_fingerprint for p in pushed],
        "event_ids": [p.event_id for p in pushed],
    }


@dataclass
class FreshClaims:
    """What :meth:`PostgresLedger.claim_fresh` found: the claims (by event id), the invitee
    URIs of forgotten people, and what was last pushed to each contact (by email)."""

    claims: dict[str, Claim] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    pushed: dict[str, PushedProjection] = field(default_factory=dict)
