"""A process's contact locks on one Postgres session (:class:`LockSession`).

A Postgres session advisory lock lasts as long as the session that took it. The worker used to
take each contact lock on a pooled connection of its own and keep it for the whole attempt,
Brevo calls and their waits included: a worker thread was a Postgres connection, and 2 x 32
threads held 68 of Postgres's default 100. Yet threads are what a busy contacts family needs
(every thread waiting for a token or an import's read-back is an item a batch can carry).

So every contact lock of a process is taken on one session, and the work under it runs on
pooled connections, one checked out per statement or transaction:

- Threads of the process exclude each other per key with a threading lock first: advisory locks
  are reentrant within a session, so the session alone would let two threads in.
- The session then takes ``pg_try_advisory_lock``. When another process holds the key (rare:
  two processes with events of one contact at once), the thread waits for it on a pooled
  connection of its own with the blocking ``pg_advisory_lock``, in Postgres's queue, rather
  than block the session all the process's locks share or poll (a poller loses to a holder
  that takes the key again at once).
- The session dying (a Postgres restart, a killed backend) ends every lock it held. Each lock
  can tell whether the session it was taken on still lives, so the ledger fails the first
  statement under a lock that ended, as the statement on the lock's dead connection
  failed when the work ran there (see :class:`~.postgres.PostgresLedger`). A session the server
  closed is noticed without a round trip: an idle session with something to read has been told
  it is ending.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

#: How often the session is checked for having ended, at most.
CHECK_EVERY = 0.02
#: Many keys in one statement: those taken, and giving them back.
TRY_MANY = "SELECT k FROM unnest(%(ks)b::bigint[]) AS k WHERE pg_try_advisory_lock(k)"
UNLOCK_MANY = "SELECT count(*) FROM unnest(%(ks)b::bigint[]) AS k WHERE pg_advisory_unlock(k)"


@dataclass
class _Key:
    lock: threading.Lock
    users: int = 0


class LockSession:
    """Every contact lock of one process (one ledger), on one Postgres session (see module)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._mutex = threading.Lock()  # one statement at a time on the session
        self._conn: Any = None  # the session's psycopg connection
        #: Bumped each time the session is found dead: locks of an older one are gone.
        self.generation = 0
        self._keys: dict[int, _Key] = {}
        self._keys_mutex = threading.Lock()
        self._closer: weakref.finalize[Any, Any] | None = None
        self._checked = 0.0  # time.monotonic() of the last check that the session lives

    # -- taking and giving back ----------------------------------------------------------------
    @contextmanager
    def hold(self, key: int) -> Iterator[Callable[[], bool]]:
        """Hold ``key`` against every thread of every process; yields whether it is still
        held (the session it was taken on lives)."""
        entry = self._enter(key)
        try:
            with entry.lock:
                generation = self._try(key)
                if generation is None:  # another process holds it: queue on a connection
                    with self._blocking(key) as alive:
                        yield alive
                    return
                try:
                    yield lambda: self.current() == generation
                finally:
                    self._give(generation, "SELECT pg_advisory_unlock(%(k)s)", {"k": key})
        finally:
            self._leave(key, entry)

    @contextmanager
    def hold_free(self, keys: Iterable[int]) -> Iterator[tuple[set[int], Callable[[], bool]]]:
        """Those of ``keys`` that no thread or process holds now, taken together in one
        statement, and whether they are still held. The others are not waited for: their
        work takes :meth:`hold` after this (a group of events, :mod:`worker.group`)."""
        entries: dict[int, _Key] = {}
        for key in set(keys):
            entry = self._enter(key)
            if entry.lock.acquire(blocking=False):
                entries[key] = entry
            else:
                self._leave(key, entry)
        held: set[int] = set()
        generation = self.generation
        try:
            if entries:
                with self._mutex:
                    generation = self.generation
                    rows = self._statement(TRY_MANY, {"ks": list(entries)}, rows=True)
                held = {row[0] for row in rows}
            for key in [k for k in entries if k not in held]:
                self._release(key, entries.pop(key))
            yield held, lambda: self.current() == generation
        finally:
            if held:
                self._give(generation, UNLOCK_MANY, {"ks": list(held)})
            for key, entry in entries.items():
                self._release(key, entry)

    def _release(self, key: int, entry: _Key) -> None:
        entry.lock.release()
        self._leave(key, entry)

    def _enter(self, key: int) -> _Key:
        with self._keys_mutex:
            entry = self._keys.get(key)
            if entry is None:
                entry = self._keys[key] = _Key(threading.Lock())
            entry.users += 1
            return entry

    def _leave(self, key: int, entry: _Key) -> None:
        with self._keys_mutex:
            entry.users -= 1
            if not entry.users:
                del self._keys[key]

    def _try(self, key: int) -> int | None:
        """``key`` on the shared session if no other process holds it: the generation."""
        with self._mutex:
            generation = self.generation
            if self._statement("SELECT pg_try_advisory_lock(%(k)s)", {"k": key}):
                return generation
        return None

    @contextmanager
    def _blocking(self, key: int) -> Iterator[Callable[[], bool]]:
        """``key`` on a pooled connection of its own, blocking until the other process lets it
        go: Postgres queues the waiters in order (and its statement timeout and deadlock
        detection apply), where polling would let the holder take it again and again. Only a
        contended key costs a connection, for as long as it is held."""
        with self._engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(%(k)s)", {"k": key})
            driver = conn.connection.driver_connection
            try:
                yield lambda: not conn.invalidated and not _told_to_end(driver)
            finally:
                if not conn.invalidated:
                    with suppress(OperationalError, InterfaceError):
                        conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": key})

    def _give(self, generation: int, statement: str, params: dict[str, Any]) -> None:
        """Give keys taken on session ``generation`` back with ``statement`` (one key or
        many), unless they ended with that session."""
        with self._mutex:
            if generation != self.generation or self._conn is None:
                return  # it ended with its session
            with suppress(OperationalError, InterfaceError):  # then it ended with the session
                self._statement(statement, params)

    def _statement(self, statement: str, params: dict[str, Any], *, rows: bool = False) -> Any:
        """Under the mutex: one statement on the session (opened if need be), its first value
        (``rows``: every row); a failure drops the session and is raised."""
        conn = self._connection()
        try:  # on psycopg's connection: SQLAlchemy's bookkeeping costs more than the statement
            cursor = conn.execute(statement, params)
            found = cursor.fetchall() if rows else cursor.fetchone()
        except (OperationalError, InterfaceError):
            self._drop()
            raise
        except Exception as exc:  # psycopg's own: the session is not to be trusted any more
            self._drop()
            raise OperationalError(statement, params, exc) from exc
        if rows:
            return found
        return found[0] if found else None

    # -- the session ---------------------------------------------------------------------------
    def current(self) -> int:
        """The generation of the live session, after checking it lives (at most every
        :data:`CHECK_EVERY` seconds: every statement under a lock asks): a lock taken on an
        older one has ended."""
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY:
            return self.generation
        with self._mutex:
            if self._conn is not None and _told_to_end(self._conn):
                self._drop()
            self._checked = now
            return self.generation

    def _connection(self) -> Any:
        """Under the mutex: the session's psycopg connection, opened if need be (a pool's
        connection detached from it: the process's for as long as it lives, then closed)."""
        if self._conn is None:
            wrapper = self._engine.connect()
            wrapper.detach()
            self._conn = wrapper.connection.dbapi_connection
            self._closer = weakref.finalize(self, _close, wrapper, self._conn)
        return self._conn

    def _drop(self) -> None:
        """Under the mutex: forget the session (its locks ended with it)."""
        if self._conn is not None:
            if self._closer is not None:
                self._closer()
            self._conn = None
            self.generation += 1


def _told_to_end(conn: Any) -> bool:
    """Whether the server ended ``conn`` (a psycopg connection with no statement in flight):
    something to read on an idle session is the server ending it (or a notice): a round trip
    tells which."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            conn.execute("SELECT 1")
    except Exception:  # a closed socket, psycopg's errors: it ended
        return True
    return False


def _close(wrapper: Connection, conn: Any) -> None:
    """Close the session for good: no reset, its locks end with it."""
    with suppress(Exception):
        wrapper.invalidate()
    with suppress(Exception):
        conn.close()
