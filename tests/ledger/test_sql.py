"""What only the SQL ledgers have: rows written by other code (retention, older versions), no PII
in tombstones, and the Postgres ledger's contact locks on one session per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from calendly_brevo.db.engine import make_engine
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.db.models import ProcessedEvent, Tombstone
from calendly_brevo.ledger.base import lock_key, now, record_durably, striped_lock
from calendly_brevo.ledger.postgres import PostgresLedger
from calendly_brevo.ledger.sqlite import SqliteLedger
from calendly_brevo.state import InviteeRecord
from tests.conftest import PG_BASE
from tests.ledger.conftest import A, B, record
from tests.ledger.test_contract import claim, status


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def sql_ledger(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[SqliteLedger | PostgresLedger]:
    from calendly_brevo.ledger import open_ledger

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    ledger = open_ledger(engine)
    assert isinstance(ledger, SqliteLedger | PostgresLedger)
    yield ledger
    engine.dispose()


@pytest.fixture
def pg_ledger(postgres_url: str) -> Iterator[PostgresLedger]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield PostgresLedger(engine)
    engine.dispose()


def test_a_claim_fills_in_a_payload_retention_removed(
    sql_ledger: SqliteLedger | PostgresLedger,
) -> None:
    with sql_ledger.sessions.begin() as s:
        ts = now()
        s.add(
            ProcessedEvent(
                event_id="old",
                event_name="invitee.created",
                status="failed",
                source="backfill",
                attempts=1,
                effects={"contact": True},
                payload=None,
                created_at=ts,
                updated_at=ts,
            )
        )
    got = claim(sql_ledger, "old", payload="now")
    assert (got.attempts, got.effects) == (2, {"contact": True})
    row = sql_ledger.event("old")
    assert row is not None and row.payload == "now"


def test_tombstones_store_no_pii(sql_ledger: SqliteLedger | PostgresLedger) -> None:
    sql_ledger.add_tombstone(A, ["https://api.calendly.com/invitees/1"])
    with sql_ledger.sessions() as s:
        rows = s.execute(select(Tombstone.key_hash, Tombstone.kind)).all()
    assert sorted(kind for _, kind in rows) == ["email", "invitee"]
    assert not any("@" in key or "calendly" in key for key, _ in rows)


def test_two_sqlite_ledgers_on_one_file_share_the_contact_lock(tmp_path: Path) -> None:
    from calendly_brevo.ledger.sqlite import SqliteLedger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    first, second = SqliteLedger(make_engine(url)), SqliteLedger(make_engine(url))
    other = SqliteLedger(make_engine(f"sqlite:///{tmp_path / 'other.db'}"))
    with first.contact_lock(A):
        assert not striped_lock(second._locks, A).acquire(blocking=False)
        elsewhere = striped_lock(other._locks, A)
        assert elsewhere.acquire(blocking=False)
        elsewhere.release()
    for ledger in (first, second, other):
        ledger.engine.dispose()


# --- Postgres: the contact locks' session ------------------------------------------------------
pg = pytest.mark.integration


def psycopg_connect() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_BASE, autocommit=True)


def _lock_taken_elsewhere(key: str) -> bool:
    with psycopg_connect() as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(key),)).fetchone()
        assert got is not None
        if got[0]:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(key),))
        return not got[0]


def _lock_session_pid(ledger: PostgresLedger) -> int:
    pid = ledger._locks._conn.info.backend_pid
    assert isinstance(pid, int)
    return pid


def _pinned_pid(ledger: PostgresLedger) -> int:
    pid = ledger._held.pinned.connection.driver_connection.info.backend_pid
    assert isinstance(pid, int)
    return pid


def _terminate(*pids: int) -> None:
    """End these backends, as a Postgres restart would, and let their sockets hear of it."""
    with psycopg_connect() as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)  # the server's goodbye reaches the sockets


@pg
def test_a_process_holds_its_contact_locks_on_one_session_and_no_pooled_connection(
    pg_ledger: PostgresLedger,
) -> None:
    """A worker thread waiting on Brevo under its contact's lock holds no connection: the
    locks of all the process's threads are on one session, the work runs on the pool."""
    ledger = pg_ledger
    assert not _lock_taken_elsewhere(A)
    holding = threading.Barrier(3)
    done = threading.Event()

    def hold(key: str) -> None:
        with ledger.contact_lock(key):
            holding.wait(10)
            done.wait(10)

    threads = [threading.Thread(target=hold, args=(k,)) for k in (A, B)]
    for t in threads:
        t.start()
    holding.wait(10)
    try:
        assert _lock_taken_elsewhere(A) and _lock_taken_elsewhere(B)
        assert ledger.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        with psycopg_connect() as admin:
            sessions = admin.execute(
                "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND ((classid::bigint << 32) | objid::bigint) = ANY(%s)",
                ([lock_key(A), lock_key(B)],),  # the bigint shift wraps to the signed key
            ).fetchone()
        assert sessions == (1,)
    finally:
        done.set()
        for t in threads:
            t.join(10)
    with ledger.contact_lock(A):
        got = claim(ledger, state=(record("u1", A), None))
        ledger.record_effect("ev1", {**got.effects, "event": "x"}, "applied")
    assert not _lock_taken_elsewhere(A) and not _lock_taken_elsewhere(B)
    assert status(ledger) == "applied"


@pg
def test_a_key_another_process_holds_is_waited_for_in_turn_without_holding_up_other_keys(
    pg_ledger: PostgresLedger,
) -> None:
    ledger = pg_ledger
    got: list[float] = []
    with psycopg_connect() as other:  # another worker process holds A
        other.execute("SELECT pg_advisory_lock(%s)", (lock_key(A),))

        def take_a() -> None:
            with ledger.contact_lock(A):
                got.append(time.monotonic())

        waiter = threading.Thread(target=take_a)
        waiter.start()
        time.sleep(0.2)
        assert not got  # A waits for the other process …
        with ledger.contact_lock(B):  # … and the session it shares takes B meanwhile
            assert _lock_taken_elsewhere(B)
        released = time.monotonic()
        # In turn: the other process lets A go and tries to take it straight back, again and
        # again, as a busy worker would; the waiter, queued in Postgres, still gets it (a
        # poller lost this race every time).
        while not got and time.monotonic() - released < 2:
            other.execute("SELECT pg_advisory_unlock_all()")
            other.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(A),))
            time.sleep(0.01)
        other.execute("SELECT pg_advisory_unlock_all()")
        waiter.join(10)
    assert got and got[0] - released < 0.5
    assert not _lock_taken_elsewhere(A)


@pg
def test_racing_ledgers_of_separate_pools_apply_once(postgres_url: str) -> None:
    """As two worker processes would: each thread has its own engine and ledger."""
    engines = [make_engine(postgres_url) for _ in range(4)]
    upgrade(engines[0])
    barrier = threading.Barrier(len(engines))
    outcomes: list[bool] = []

    def deliver(ledger: PostgresLedger) -> None:
        barrier.wait(10)
        with ledger.contact_lock(A):
            got = claim(ledger, "race")
            if not got.duplicate:
                ledger.record_effect("race", {"event": "x"}, "applied")
        outcomes.append(got.duplicate)

    threads = [threading.Thread(target=deliver, args=(PostgresLedger(e),)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for e in engines:
        e.dispose()
    assert sorted(outcomes) == [False, True, True, True]


@pg
def test_a_lock_session_that_dies_fails_the_next_statement_once_and_the_effect_is_recorded(
    pg_ledger: PostgresLedger,
) -> None:
    """Postgres ends the lock session mid-event: the lock is gone, so the next statement fails
    (as one on the lock's dead connection did); an effect Brevo took is still recorded, the
    effect write waiting it out on the pool."""
    ledger = pg_ledger
    with ledger.contact_lock(A):
        got = claim(ledger, state=(record("u1", A), None))
        with ledger.engine.connect() as pooled:  # the idle connection the claim ran on
            pool_pid = pooled.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        _terminate(_lock_session_pid(ledger), pool_pid)  # as a restart would: all of them
        assert not _lock_taken_elsewhere(A)  # it ended with its session
        with pytest.raises(OperationalError, match="lock ended"):
            ledger.last_pushed(A)
        # Once: the next statement (the attempt recording its failure, say) runs on a fresh
        # connection, not on the pool's dead one.
        ledger.finish("ev1", "failed", "OperationalError: contact lock")
        effects = {**got.effects, "event": "x"}
        record_durably(ledger, "ev1", effects, "applied", give_up_after=10)
    assert status(ledger) == "applied"
    with ledger.contact_lock(A):  # a new session takes the next lock
        assert _lock_taken_elsewhere(A)
    assert not _lock_taken_elsewhere(A)


@pg
def test_a_failed_claim_transaction_is_rolled_back(pg_ledger: PostgresLedger) -> None:
    ledger = pg_ledger
    with ledger.contact_lock(A):
        with pytest.raises(Exception, match="value too long"):
            claim(ledger, state=(InviteeRecord(invitee_uri="u" * 600, email=A), None))
        assert status(ledger) is None  # the claim went with it
        got = claim(ledger, state=(record("u1", A), None))  # the connection is usable again
        assert got.attempts == 1
    assert [r.invitee_uri for r in ledger.contact_state(A)[0]] == ["u1"]


@pg
def test_a_pinned_block_checks_out_one_connection_for_all_its_statements(
    pg_ledger: PostgresLedger,
) -> None:
    """The group pass's leader pins one connection for its group's statements."""
    from sqlalchemy import event

    ledger = pg_ledger
    checkouts: list[object] = []
    event.listen(ledger.engine, "checkout", lambda *args: checkouts.append(args[0]))
    with ledger.pinned():
        got = claim(ledger, state=(record("u1", A), None))
        ledger.record_effect("ev1", {**got.effects, "contact": True})
        ledger.is_tombstoned(invitee_uri="u1")
        ledger.last_pushed_many([A])
        assert len(checkouts) == 1
        with ledger.released():  # a Brevo call: no connection held meanwhile
            assert ledger.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        ledger.finish("ev1", "applied")  # checks one out again, kept to the block's end
        ledger.is_tombstoned(invitee_uri="u1")
        assert ledger.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert len(checkouts) == 2
    assert ledger.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    claim(ledger, "ev2")  # unpinned: each statement checks out its own again
    ledger.finish("ev2", "applied")
    assert len(checkouts) == 4


@pg
def test_a_pinned_connection_that_broke_leaves_the_rest_of_the_block_to_the_pool(
    pg_ledger: PostgresLedger,
) -> None:
    """Postgres ends the pinned connection mid-group (a restart): the next statement fails
    once; an effect write waiting it out lands on a fresh connection, as it would unpinned."""
    ledger = pg_ledger
    with ledger.pinned():
        got = claim(ledger, state=(record("u1", A), None))
        _terminate(_pinned_pid(ledger))
        with pytest.raises(OperationalError):
            ledger.last_pushed_many([A])
        record_durably(ledger, "ev1", {**got.effects, "event": "x"}, "applied", give_up_after=10)
        assert not ledger.is_tombstoned(invitee_uri="u1")  # the pool's, from here on
    assert status(ledger) == "applied"


@pg
def test_a_lock_session_that_dies_in_a_pinned_block_lets_the_failure_record_land(
    pg_ledger: PostgresLedger,
) -> None:
    """Postgres restarts during a group's Brevo calls: the lock session and the pinned
    connection both died. The next statement fails once; the attempt's record of its failure
    then lands on a fresh connection, not on the pinned dead one."""
    ledger = pg_ledger
    with ledger.contact_lock(A), ledger.pinned():
        claim(ledger, state=(record("u1", A), None))
        _terminate(_lock_session_pid(ledger), _pinned_pid(ledger))
        with pytest.raises(OperationalError, match="lock ended"):
            ledger.last_pushed_many([A])
        ledger.finish("ev1", "failed", "OperationalError: contact lock")
    assert status(ledger) == "failed"


@pg
def test_a_group_claim_takes_only_new_events_of_people_not_forgotten_or_nothing_at_all(
    pg_ledger: PostgresLedger,
) -> None:
    """The group pass's claim (one pipelined transaction): an event stored before and one of a
    forgotten invitee are left alone, what was last pushed comes back with it, and a claim
    whose state write fails claims nothing and leaves the connection usable."""
    from calendly_brevo.ledger.base import Arrival
    from calendly_brevo.pushed import pushed_projection

    ledger = pg_ledger

    def new(event_id: str, uri: str, email: str) -> Any:
        arrival = Arrival(event_id, "invitee.created", uri, email, "{}", "webhook", None)
        return arrival, (record(uri, email), None)

    claim(ledger, "stored")
    ledger.add_tombstone("gone@example.com", ["u-gone"])
    ledger.record_pushed(pushed_projection(B, {"FIRSTNAME": "Bob"}, [7], "fp", "before"))
    with ledger.pinned():
        got = ledger.claim_fresh(
            [
                new("stored", "u-s", A),
                new("gone", "u-gone", "gone@example.com"),
                new("ev2", "u2", B),
            ]
        )
    assert set(got.claims) == {"ev2"} and got.forgotten == {"u-gone"}
    assert (status(ledger, "stored"), status(ledger, "gone"), status(ledger, "ev2")) == (
        "processing",
        None,
        "processing",
    )
    assert got.claims["ev2"].records is not None
    assert [r.invitee_uri for r in got.claims["ev2"].records] == ["u2"]
    assert set(got.pushed) == {B} and got.pushed[B].list_ids == (7,)
    assert [r.invitee_uri for r in ledger.contact_state(B)[0]] == ["u2"]

    arrival = Arrival("bad", "invitee.created", "u3", A, "{}", "webhook", None)
    with ledger.pinned():  # one connection throughout, as in a group pass
        with pytest.raises(Exception, match="value too long"):  # the state write, after the claim
            ledger.claim_fresh([(arrival, (InviteeRecord(invitee_uri="u" * 600, email=A), None))])
        assert set(ledger.claim_fresh([new("ev3", "u3", A)]).claims) == {"ev3"}
    assert status(ledger, "bad") is None  # the claim went with it
    assert status(ledger, "ev3") == "processing"


@pg
def test_a_connection_that_broke_under_a_pipelined_claim_is_sqlalchemys_disconnect(
    pg_ledger: PostgresLedger,
) -> None:
    """Postgres ends the pinned connection (a restart) before a group's claim: the claim
    fails as any statement on a dead connection does (SQLAlchemy's ``OperationalError``, the
    connection invalidated), claims nothing, and the next one runs on a fresh connection."""
    from calendly_brevo.ledger.base import Arrival

    ledger = pg_ledger

    def new(event_id: str, uri: str) -> Any:
        arrival = Arrival(event_id, "invitee.created", uri, A, "{}", "webhook", None)
        return arrival, (record(uri, A), None)

    with ledger.pinned():
        ledger.last_pushed_many([A])  # checks the pinned connection out
        _terminate(_pinned_pid(ledger))
        with pytest.raises(OperationalError) as raised:
            ledger.claim_fresh([new("ev1", "u1")])
        assert raised.value.connection_invalidated
        assert set(ledger.claim_fresh([new("ev2", "u2")]).claims) == {"ev2"}
    assert (status(ledger, "ev1"), status(ledger, "ev2")) == (None, "processing")
