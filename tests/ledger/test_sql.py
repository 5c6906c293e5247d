"""What only the SQL ledgers have: rows written by other code (retention, older versions), no PII
in tombstones, and the Postgres ledger's work on the contact lock's own connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

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


# --- Postgres: the contact lock's connection ---------------------------------------------------
pg = pytest.mark.integration


def _lock_taken_elsewhere(key: str) -> bool:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(key),)).fetchone()
        assert got is not None
        if got[0]:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(key),))
        return not got[0]


def _backend_pid(ledger: PostgresLedger) -> int:
    with ledger._connection() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    assert isinstance(pid, int)
    return pid


@pg
def test_work_under_the_lock_runs_on_the_lock_connection(pg_ledger: PostgresLedger) -> None:
    ledger = pg_ledger
    assert not _lock_taken_elsewhere(A)
    with ledger.contact_lock(A):
        assert _lock_taken_elsewhere(A)
        pid = _backend_pid(ledger)
        got = claim(ledger, state=(record("u1", A), None))
        ledger.record_effect("ev1", {**got.effects, "event": "x"}, "applied")
        assert _backend_pid(ledger) == pid
        with ledger.contact_lock(B):  # a nested lock has a connection of its own
            assert _backend_pid(ledger) != pid
        assert _backend_pid(ledger) == pid
    assert not _lock_taken_elsewhere(A)
    assert status(ledger) == "applied"


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
def test_a_lock_connection_that_dies_leaves_the_effect_recorded(
    pg_ledger: PostgresLedger,
) -> None:
    """Postgres restarts mid-event: the effect write waits it out on a new connection."""
    import psycopg

    ledger = pg_ledger
    with ledger.contact_lock(A):
        got = claim(ledger, state=(record("u1", A), None))
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(ledger),))
        effects = {**got.effects, "event": "x"}
        record_durably(ledger, "ev1", effects, "applied", give_up_after=10)
    assert status(ledger) == "applied"
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
