"""The group pass (``worker/group.py``) on Postgres and the fake Brevo, worker threads taking
events up together as Dramatiq's do (a message is retried until it is done):

- first-time events of different people are claimed, pushed and recorded together: one
  ``POST /events/batch`` for many, each custom event sent once, each event's trace and pushed
  projection recorded as on the one-event path;
- contacts pushed before are updated through ``/contacts/batch``;
- a 207's refused item is dead-lettered with Brevo's reason and the rest of the group is sent;
- a group whose events answer was lost marks its events in doubt: the retry looks them up and
  nothing fires twice;
- what the group cannot take (a second event of one contact, a redelivery, a forgotten person,
  a contact another thread holds) takes the one-event path and ends as it would there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from calendly_brevo.brevo.batching import Crowd
from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.brevo.coalesced import CoalescingBrevo
from calendly_brevo.db.engine import make_engine
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.events import parse_envelope, read_event
from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.ledger.postgres import PostgresLedger
from tests import payloads
from tests.fakes.brevo import FakeBrevoServer
from tests.worker.test_batched_pipeline import (
    KEY,
    THREADS,
    fake,
    metric,
    requests,
    run,
    sent_ids,
)
from worker.group import Gatherer, GroupPass
from worker.pipeline import Job, Pipeline

pytestmark = pytest.mark.integration
__all__ = ["fake"]  # the fake Brevo of the coalescing tests, limits out of the way

REASONS = ("other_event", "same_contact", "locked", "forgotten", "stored")


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[PostgresLedger]:
    engine = make_engine(postgres_url, pool_size=THREADS)
    upgrade(engine)
    yield PostgresLedger(engine)
    engine.dispose()


@pytest.fixture
def pipe(fake: FakeBrevoServer, ledger: PostgresLedger) -> Iterator[Pipeline]:
    settings = payloads.settings(
        brevo={
            "api_key": KEY,
            "api_url": fake.base_url,
            "timeout_seconds": 1.0,
            "rate_limits": {
                f: {"rate": 1000, "burst": 1000} for f in ("contacts", "events", "other")
            },
        },
        worker={"threads": THREADS},
    )
    client = BrevoClient.from_settings(settings)
    crowd = Crowd()
    port = CoalescingBrevo(client, settings.brevo.batch, patience=10, crowd=crowd)
    pipeline = Pipeline(settings, ledger, port, crowd=crowd)
    # A long gathering window: the events a test starts together are one group.
    pipeline.group = GroupPass(
        pipeline, ledger, client, crowd, threads=THREADS, max_items=64, window=1.0, patience=30
    )
    yield pipeline
    client.close()


def people(make: Any, n: int, prefix: str) -> list[str]:
    """``n`` bodies from ``make`` (a :mod:`tests.payloads` builder), one new person each."""
    return [
        payloads.body(
            make(
                email=f"{prefix}{i}@example.com",
                invitee_uri=payloads.invitee_uri(f"EV{prefix}{i}", f"IN{prefix}{i}"),
            )
        ).decode()
        for i in range(n)
    ]


def groups() -> tuple[float, float]:
    """Group passes so far, and the events they held."""
    return (
        metric("calendly_brevo_worker_group_events_count"),
        metric("calendly_brevo_worker_group_events_sum"),
    )


def alone(reason: str) -> float:
    return metric("calendly_brevo_worker_group_alone_total", reason=reason)


def event_id(body: str) -> str:
    return read_event(parse_envelope(body)).identity.event_id


def unique(tag: str) -> str:
    """A prefix no other test run on this database has used (the tables are shared)."""
    return f"{tag}{threading.get_ident() % 100000}x{id(object()) % 100000}-"


def test_first_time_events_are_claimed_pushed_and_recorded_together_and_each_is_sent_once(
    fake: FakeBrevoServer, pipe: Pipeline, ledger: PostgresLedger
) -> None:
    docs = people(payloads.invitee_created, THREADS, unique("grp"))
    passes, events = groups()
    left = [alone(r) for r in REASONS]
    assert run(pipe, docs) == ["applied"] * THREADS
    assert groups() == (passes + 1, events + THREADS)  # one pass held them all …
    assert [alone(r) for r in REASONS] == left  # … and applied every one
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    calls = requests(fake)
    assert calls["POST /v3/events/batch"] == 1  # the group's custom events, one request
    assert calls["POST /v3/contacts"] == THREADS  # new contacts: one create each
    assert fake.snapshot()["violations"] == []
    for body in docs:
        row = ledger.event(event_id(body))
        assert row is not None and row.status == "applied" and row.attempts == 1
        assert row.effects.get("contact") is True and row.effects.get("event")
        routes = [c["route"] for c in row.calls if c["method"] == "POST"]
        assert routes == ["/contacts", "/events/batch"]  # its own create, the shared batch
    emails = [read_event(parse_envelope(b)).identity.email for b in docs]
    pushed = ledger.last_pushed_many(e for e in emails if e)
    assert set(pushed) == set(emails)
    assert {p.list_ids for p in pushed.values()} == {(10,)}


def test_contacts_pushed_before_are_updated_through_contacts_batch(
    fake: FakeBrevoServer, pipe: Pipeline
) -> None:
    prefix = unique("upd")
    run(pipe, people(payloads.invitee_created, THREADS, prefix))
    passes, events = groups()
    assert run(pipe, people(payloads.invitee_canceled, THREADS, prefix)) == ["applied"] * THREADS
    assert groups() == (passes + 1, events + THREADS)
    calls = requests(fake)
    assert calls["POST /v3/contacts/batch"] == 1
    assert calls["POST /v3/contacts"] == THREADS  # only the creations
    statuses = {
        c["email"]: c["attributes"].get("BOOKING_STATUS") for c in fake.snapshot()["contacts"]
    }
    assert len(statuses) == THREADS and set(statuses.values()) == {"cancelled"}
    assert fake.snapshot()["violations"] == []


def test_a_refused_item_is_dead_lettered_with_brevos_reason_and_the_rest_are_sent(
    fake: FakeBrevoServer, pipe: Pipeline, ledger: PostgresLedger
) -> None:
    docs = people(payloads.invitee_created, THREADS, unique("ref"))
    refused = {event_id(docs[1]), event_id(docs[5])}
    fake.call(fake.state.reject_batch_items, *refused)
    passes, events = groups()
    outcomes = run(pipe, docs)
    assert groups() == (passes + 1, events + THREADS)
    assert Counter(outcomes) == Counter({"applied": THREADS - 2, "dead_lettered": 2})
    assert requests(fake)["POST /v3/events/batch"] == 1
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs if event_id(b) not in refused})
    letters = ledger.dead_letters(DeadLetterFilter(), limit=None)
    mine = [d for d in letters if d.event_id in refused]
    assert len(mine) == 2
    assert all("refused (207): Injected item failure" in (d.error or "") for d in mine)


def test_a_group_whose_events_answer_was_lost_is_looked_up_and_never_sent_twice(
    fake: FakeBrevoServer, pipe: Pipeline, ledger: PostgresLedger
) -> None:
    docs = people(payloads.invitee_created, THREADS, unique("lost"))
    # Brevo takes the batch, the answer never comes (held past the client's 1 s timeout).
    fake.inject("timeout", path=r"^/v3/events/batch$", count=1, delay=2.0, apply_effect=True)
    passes, events = groups()
    assert run(pipe, docs) == ["applied"] * THREADS
    # The first attempts were one group; the retries know their claims and go one by one.
    assert groups() == (passes + 1, events + THREADS)
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    assert requests(fake)["GET /v3/events"] >= 1  # the retries looked them up first
    for body in docs:
        row = ledger.event(event_id(body))
        assert row is not None and row.status == "applied" and row.attempts == 2


def test_what_a_group_cannot_take_goes_the_one_event_way_and_ends_as_it_would_there(
    fake: FakeBrevoServer, pipe: Pipeline, ledger: PostgresLedger
) -> None:
    prefix = unique("alone")
    first = people(payloads.invitee_created, 3, prefix)
    assert run(pipe, first) == ["applied"] * 3
    # Together: a redelivery of an applied event, a second event of one contact beside its
    # first, a forgotten person's old event, and new ones.
    forgotten = people(payloads.invitee_created, 1, prefix + "gone")[0]
    gone = read_event(parse_envelope(forgotten)).identity
    assert gone.email and gone.invitee_uri
    ledger.add_tombstone(gone.email, [gone.invitee_uri])
    created_twice = people(payloads.invitee_created, 1, prefix + "two")[0]
    canceled_twice = people(payloads.invitee_canceled, 1, prefix + "two")[0]
    new = people(payloads.invitee_created, 3, prefix + "new")
    docs = [first[0], created_twice, canceled_twice, forgotten, *new]
    before = {r: alone(r) for r in ("stored", "same_contact", "forgotten")}
    passes, events = groups()
    outcomes = dict(zip(docs, run(pipe, docs), strict=True))
    assert groups() == (passes + 1, events + len(docs))
    assert {r: alone(r) - n for r, n in before.items()} == {
        "stored": 1,
        "same_contact": 1,
        "forgotten": 1,
    }
    assert outcomes[first[0]] == "duplicate"
    assert outcomes[created_twice] == outcomes[canceled_twice] == "applied"
    assert outcomes[forgotten] == "suppressed"
    assert [outcomes[b] for b in new] == ["applied"] * 3
    assert sent_ids(fake) == Counter(
        {event_id(b): 1 for b in [*first, created_twice, canceled_twice, *new]}
    )
    person = {c["email"]: c for c in fake.snapshot()["contacts"]}[f"{prefix}two0@example.com"]
    assert person["attributes"]["BOOKING_STATUS"] == "cancelled"  # in any order
    assert f"{prefix}gone0@example.com" not in {c["email"] for c in fake.snapshot()["contacts"]}
    assert fake.snapshot()["violations"] == []


def gathered(
    threads: int, jobs: int, window: float, max_items: int = 64
) -> tuple[list[int], float]:
    """``jobs`` submitted at once to a :class:`Gatherer` of ``threads``: the group sizes its
    runner saw, and how long the slowest job waited."""
    sizes: list[int] = []

    def runner(group: list[Any]) -> list[Any]:
        sizes.append(len(group))
        return [None] * len(group)

    gatherer = Gatherer(runner, threads, max_items=max_items, window=window, patience=30)
    started = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(gatherer.submit, [cast(Job, object())] * jobs))
    return sizes, time.monotonic() - started


def test_a_group_leaves_once_every_thread_is_in_it_without_waiting_its_window() -> None:
    sizes, took = gathered(threads=6, jobs=6, window=30.0)
    assert sizes == [6] and took < 5


def test_a_lone_event_waits_no_longer_than_the_window() -> None:
    sizes, took = gathered(threads=6, jobs=1, window=0.2)
    assert sizes == [1] and 0.15 < took < 5


def test_what_a_full_group_leaves_behind_is_led_by_its_first() -> None:
    sizes, took = gathered(threads=6, jobs=6, window=0.3, max_items=4)
    assert sorted(sizes) == [2, 4] and took < 5
