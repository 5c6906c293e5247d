"""The store's claim, effects and state merge, the same cases on SQLite (the ORM path) and on
Postgres (plain SQL on the contact lock's connection): both must give the same answers."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calendly_brevo.db.engine import make_engine, make_sessionmaker
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.db.models import Invitee, ProcessedEvent
from calendly_brevo.state import InviteeRecord, NoShowMark
from tests.conftest import PG_BASE
from worker.store import Claim, Store, lock_key, now

#: Advisory locks are database-wide: other test runs on the same database must not share these.
_RUN = secrets.token_hex(4)
A = f"ann-{_RUN}@example.com"
B = f"bob-{_RUN}@example.com"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    yield Store(engine, make_sessionmaker(engine))
    engine.dispose()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield Store(engine, make_sessionmaker(engine))
    engine.dispose()


def claim(
    store: Store,
    event_id: str = "ev1",
    *,
    email: str | None = A,
    state: tuple[InviteeRecord | None, NoShowMark | None] | None = None,
    payload: str = '{"n": 1}',
) -> Claim:
    return store.claim(
        event_id=event_id,
        event_name="invitee.created",
        invitee_uri="https://api.calendly.com/invitees/1",
        email=email,
        payload=payload,
        source="webhook",
        received_at=None,
        state=state,
    )


def row(store: Store, event_id: str = "ev1") -> ProcessedEvent:
    with store.sessions() as s:
        found = s.get(ProcessedEvent, event_id)
        assert found is not None
        return found


def test_every_claim_counts_an_attempt_and_done_means_duplicate(store: Store) -> None:
    first = claim(store)
    assert (first.duplicate, first.attempts, first.effects, first.interrupted) == (
        False,
        1,
        {},
        False,
    )
    assert store.status_of("ev1") == "processing"
    assert row(store).payload == '{"n": 1}'

    again = claim(store)  # left "processing": the worker before died
    assert (again.duplicate, again.attempts, again.interrupted) == (False, 2, True)

    store.record_effect("ev1", "contact", effects=again.effects)
    store.finish("ev1", "failed", "Boom: no")
    assert (row(store).status, row(store).last_error) == ("failed", "Boom: no")

    third = claim(store)
    assert (third.duplicate, third.attempts, third.effects, third.interrupted) == (
        False,
        3,
        {"contact": True},
        False,
    )
    store.record_effect("ev1", "event", "calendly_invitee_created", finish="applied", effects={})
    done = row(store)
    assert (done.status, done.last_error, done.attempts) == ("applied", None, 3)
    assert done.applied_at is not None
    assert done.effects == {"event": "calendly_invitee_created"}  # the caller's effects win

    dup = claim(store, state=(record("u1", A), None))
    assert (dup.duplicate, dup.attempts, dup.effects) == (
        True,
        3,
        {"event": "calendly_invitee_created"},
    )
    assert dup.records is None and dup.record is None
    assert row(store).attempts == 3
    assert store.contact_state(A) == ([], [])  # a duplicate stores no state


def test_ignored_is_done_and_dead_is_claimed_again(store: Store) -> None:
    claim(store, "ign")
    store.finish("ign", "ignored")
    assert row(store, "ign").applied_at is not None
    assert claim(store, "ign").duplicate

    claim(store, "dead")
    store.dead_letter(
        event_id="dead",
        event_name="invitee.created",
        reason="error",
        error="Boom",
        attempts=1,
        payload="{}",
        source="webhook",
        received_at=None,
    )
    replay = claim(store, "dead", payload="other")
    assert (replay.duplicate, replay.attempts, replay.interrupted) == (False, 2, False)
    assert row(store, "dead").payload == '{"n": 1}'  # the first payload is kept


def test_a_claim_fills_in_a_missing_payload(store: Store) -> None:
    with store.sessions.begin() as s:
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
    got = claim(store, "old", payload="now")
    assert (got.attempts, got.effects) == (2, {"contact": True})
    assert row(store, "old").payload == "now"


def test_record_effect_without_the_effects_reads_them_first(store: Store) -> None:
    claim(store)
    store.record_effect("ev1", "contact")
    store.record_effect("ev1", "event", "x", finish="applied")
    assert row(store).effects == {"contact": True, "event": "x"}
    assert row(store).status == "applied"


def record(uri: str, email: str, day: int = 1, **fields: Any) -> InviteeRecord:
    return InviteeRecord(
        invitee_uri=uri, email=email, updated_at=f"2024-05-0{day}T10:00:00Z", **fields
    )


def mark(invitee: str, uri: str | None, day: int = 1, **flags: bool) -> NoShowMark:
    return NoShowMark(uri, invitee, marked_at=f"2024-05-0{day}T12:00:00Z", **flags)


#: (event id, email, record, mark): one contact's events, one of another contact's, and an
#: invitee that moves from one email to the other.
STEPS: list[tuple[str, str, InviteeRecord | None, NoShowMark | None]] = [
    ("s1", A, record("u1", A, name="Ann", start_time="2024-06-01T09:00:00Z"), None),
    ("s2", A, record("u2", A, 2, name="Ann L"), mark("u2", "ns1", created=True)),
    ("s3", B, record("u3", B, name="Bob"), mark("u3", "ns3", created=True)),
    ("s4", A, record("u1", A, 3, status="canceled", cancel_reason="busy"), None),
    ("s5", A, record("u2", A, 1, name="Old name", timezone="Europe/Paris"), None),
    ("s6", A, record("u2", A, 2), mark("u2", "ns1", 3, deleted=True)),
    ("s7", A, record("u2", A, 2), mark("u2", None, 4, deleted=True)),
    ("s8", B, record("u1", B, 5), mark("u1", "ns9", 5, created=True)),
    ("s9", A, record("u4", A, 5), None),
]


def stored(store: Store, uri: str) -> InviteeRecord:
    with store.sessions() as s:
        found = s.get(Invitee, uri)
        assert found is not None
        return InviteeRecord.from_dict(found.data)


def by_uri(records: list[InviteeRecord] | None) -> list[InviteeRecord]:
    return sorted(records or [], key=lambda r: r.invitee_uri)


def by_key(marks: list[NoShowMark] | None) -> list[NoShowMark]:
    return sorted(marks or [], key=lambda m: m.key)


def test_the_claim_merges_the_state_and_reads_it_back(store: Store) -> None:
    for event_id, email, rec, mk in STEPS:
        got = claim(store, event_id, email=email, state=(rec, mk))
        records, marks = store.contact_state(email)
        assert by_uri(got.records) == by_uri(records), event_id
        assert by_key(got.marks) == by_key(marks), event_id
        if rec is not None:
            assert got.record == stored(store, rec.invitee_uri), event_id
    # spot checks of the end state (the merge rules themselves are tested in test_state.py)
    assert stored(store, "u1").email == B and stored(store, "u1").status == "canceled"
    assert stored(store, "u2").name == "Ann L" and stored(store, "u2").timezone == "Europe/Paris"
    records, marks = store.contact_state(A)
    assert [r.invitee_uri for r in by_uri(records)] == ["u2", "u4"]
    assert [(m.no_show_uri, m.created, m.deleted) for m in by_key(marks)] == [
        (None, False, True),
        ("ns1", True, True),
    ]
    records, marks = store.contact_state(B)
    assert [r.invitee_uri for r in by_uri(records)] == ["u1", "u3"]
    assert [m.no_show_uri for m in by_key(marks)] == ["ns9", "ns3"]


def test_a_replayed_state_changes_nothing(store: Store) -> None:
    for event_id, email, rec, mk in STEPS:
        claim(store, event_id, email=email, state=(rec, mk))
    before = {e: store.contact_state(e) for e in (A, B)}
    for event_id, email, rec, mk in reversed(STEPS):
        store.finish(event_id, "failed")
        claim(store, event_id, email=email, state=(rec, mk))
    after = {e: store.contact_state(e) for e in (A, B)}
    for e in (A, B):
        assert by_uri(after[e][0]) == by_uri(before[e][0])
        assert by_key(after[e][1]) == by_key(before[e][1])


def test_state_is_only_merged_with_an_email(store: Store) -> None:
    got = claim(store, email=None, state=(record("u1", A), None))
    assert got.records is None and got.marks is None
    assert store.contact_state(A) == ([], [])


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


def _backend_pid(store: Store) -> int:
    with store._connection() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    assert isinstance(pid, int)
    return pid


@pg
def test_work_under_the_lock_runs_on_the_lock_connection(pg_store: Store) -> None:
    store = pg_store
    assert not _lock_taken_elsewhere(A)
    with store.contact_lock(A):
        assert _lock_taken_elsewhere(A)
        pid = _backend_pid(store)
        got = claim(store, state=(record("u1", A), None))
        store.record_effect("ev1", "event", "x", finish="applied", effects=got.effects)
        assert _backend_pid(store) == pid
        with store.contact_lock(B):  # a nested lock has a connection of its own
            assert _backend_pid(store) != pid
        assert _backend_pid(store) == pid
    assert not _lock_taken_elsewhere(A)
    assert store.status_of("ev1") == "applied"


@pg
def test_the_lock_serialises_threads(pg_store: Store) -> None:
    store = pg_store
    inside = {"now": 0, "max": 0}
    guard = threading.Lock()

    def work(i: int) -> None:
        with store.contact_lock(A):
            with guard:
                inside["now"] += 1
                inside["max"] = max(inside["max"], inside["now"])
            got = claim(store, f"t{i}", state=(record(f"u{i}", A), None))
            store.record_effect(f"t{i}", "event", "x", finish="applied", effects=got.effects)
            with guard:
                inside["now"] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert inside["max"] == 1
    assert len(store.contact_state(A)[0]) == 6


@pg
def test_a_lock_connection_that_dies_leaves_the_effect_recorded(pg_store: Store) -> None:
    """Postgres restarts mid-event: the effect write waits it out on a new connection."""
    import psycopg

    store = pg_store
    with store.contact_lock(A):
        got = claim(store, state=(record("u1", A), None))
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(store),))
        store.record_effect_durably(
            "ev1", "event", "x", finish="applied", effects=got.effects, give_up_after=10
        )
    assert store.status_of("ev1") == "applied"
    assert not _lock_taken_elsewhere(A)


@pg
def test_a_failed_claim_transaction_is_rolled_back(pg_store: Store) -> None:
    store = pg_store
    bad = record("u1", A)
    with store.contact_lock(A):
        with pytest.raises(Exception, match="value too long"):
            claim(store, state=(InviteeRecord(invitee_uri="u" * 600, email=A), None))
        assert store.status_of("ev1") is None  # the claim went with it
        got = claim(store, state=(bad, None))  # the connection is usable again
        assert got.attempts == 1
    assert store.contact_state(A)[0] == [stored(store, "u1")]
