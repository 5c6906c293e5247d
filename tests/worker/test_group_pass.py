"""The group pass (``worker/group.py``) on Postgres and the fake Brevo, given a batch as the
worker's consumer hands it one (``worker/consumer.py``: screened, run, and what it leaves on
the one-event path, a message retried until it is done):

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
from typing import Any

import pytest

from calendly_brevo.brevo.batching import Crowd
from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.brevo.coalesced import CoalescingBrevo
from calendly_brevo.db.engine import make_engine
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.errors import TransientError
from calendly_brevo.events import parse_envelope, read_event
from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.ledger.postgres import PostgresLedger
from tests import payloads
from tests.fakes.brevo import FakeBrevoServer
from tests.worker.test_batched_pipeline import (
    ATTEMPTS,
    KEY,
    THREADS,
    fake,
    metric,
    requests,
    sent_ids,
)
from worker.group import GroupPass
from worker.outcomes import Outcome
from worker.pipeline import Job, Last, Pipeline

pytestmark = pytest.mark.integration
__all__ = ["fake"]  # the fake Brevo of the coalescing tests, limits out of the way

REASONS = ("other_event", "same_contact", "locked", "forgotten", "stored")


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[PostgresLedger]:
    engine = make_engine(postgres_url, pool_size=THREADS)
    upgrade(engine)
    yield PostgresLedger(engine)
    engine.dispose()


def unlimited(fake: FakeBrevoServer) -> dict[str, Any]:
    """The ``brevo`` settings for ``fake``, its limits out of the way (these tests are about
    batching, not pacing)."""
    return {
        "api_key": KEY,
        "api_url": fake.base_url,
        "timeout_seconds": 1.0,
        "rate_limits": {f: {"rate": 1000, "burst": 1000} for f in ("contacts", "events", "other")},
    }


@pytest.fixture
def pipe(fake: FakeBrevoServer, ledger: PostgresLedger) -> Iterator[Pipeline]:
    settings = payloads.settings(brevo=unlimited(fake), worker={"threads": THREADS})
    client = BrevoClient.from_settings(settings)
    crowd = Crowd()
    port = CoalescingBrevo(client, settings.brevo.batch, patience=10, crowd=crowd)
    pipeline = Pipeline(settings, ledger, port, crowd=crowd)
    pipeline.group = GroupPass(pipeline, ledger, client, max_items=64)
    yield pipeline
    client.close()


def run(pipe: Pipeline, bodies: list[str]) -> list[str]:
    """``bodies`` as one batch off the queue, as the worker's consumer takes it: screened and
    run by the group pass; then what it left (screened out, declined, failed transiently) on
    the one-event path's threads, each retried like a Dramatiq message until it is done."""
    group = pipe.group
    assert group is not None
    jobs = [Job(b, 1.0, "webhook", None, Last(False, False), time.perf_counter()) for b in bodies]
    items = group.screen(jobs)
    group.run(items)
    results = {id(item.job): item.result for item in items}

    def rest(job: Job) -> str:
        result = results.get(id(job))
        if isinstance(result, Outcome):
            return result.status
        if result is not None and not isinstance(result, TransientError):
            raise result
        for attempt in range(1 if result is None else 2, ATTEMPTS + 1):
            try:
                return pipe.process(
                    job.body, 1.0, attempt=attempt, final=attempt == ATTEMPTS
                ).status
            except TransientError:
                continue
        raise AssertionError("unreachable: the last attempt dead-letters")

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(rest, jobs))


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
    for body in docs:
        row = ledger.event(event_id(body))
        assert row is not None and row.status == "applied" and row.attempts == 2


def checks() -> dict[str, float]:
    """The in-doubt lookups so far, by result."""
    name = "calendly_brevo_event_resend_checks_total"
    results = ("found", "absent", "found_shared", "absent_shared")
    return {r: metric(name, result=r) for r in results}


def since(before: dict[str, float]) -> dict[str, float]:
    return {r: n - before[r] for r, n in checks().items() if n != before[r]}


class Killed(BaseException):
    """The worker process dying where it is raised (nothing after it runs)."""


def test_the_retries_of_a_batch_whose_answer_was_lost_look_it_up_once(
    fake: FakeBrevoServer, pipe: Pipeline
) -> None:
    docs = people(payloads.invitee_created, THREADS, unique("lost1"))
    fake.inject("timeout", path=r"^/v3/events/batch$", count=1, delay=2.0, apply_effect=True)
    before = checks()
    assert run(pipe, docs) == ["applied"] * THREADS  # the retries run side by side
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    # One lookup read the batch's window; the others' answers came from it.
    assert since(before) == {"found": 1, "found_shared": THREADS - 1}
    assert requests(fake)["GET /v3/events"] == 1


@pytest.mark.parametrize("sent", [True, False], ids=["after_sending", "before_sending"])
def test_the_redeliveries_of_a_batch_whose_worker_died_look_it_up_once(
    fake: FakeBrevoServer,
    pipe: Pipeline,
    ledger: PostgresLedger,
    monkeypatch: pytest.MonkeyPatch,
    sent: bool,
) -> None:
    """The worker dies after its contacts' effects are recorded, with the batch's custom
    events sent (their record never made) or not sent yet: the redeliveries find the claims
    interrupted, so every event is in doubt; one lookup answers for all of them, and each
    custom event is in Brevo once."""
    docs = people(payloads.invitee_created, THREADS, unique("died"))
    group = pipe.group
    assert group is not None
    send_events, shared = group._send_events, group._shared

    def request_then_die(items: Any, send: Any) -> Any:
        shared(items, send)
        raise Killed()

    def dies(items: Any) -> None:
        if not sent:
            raise Killed()
        monkeypatch.setattr(group, "_shared", request_then_die)
        send_events(items)

    monkeypatch.setattr(group, "_send_events", dies)
    jobs = [Job(b, 1.0, "webhook", None, Last(False, False), time.perf_counter()) for b in docs]
    group.run(group.screen(jobs))
    monkeypatch.undo()
    assert len(sent_ids(fake)) == (THREADS if sent else 0)
    before = checks()

    def redelivered(body: str) -> str:
        return pipe.process(body, 1.0, attempt=1).status

    with ThreadPoolExecutor(THREADS) as pool:
        assert list(pool.map(redelivered, docs)) == ["applied"] * THREADS
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    own, others = ("found", "found_shared") if sent else ("absent", "absent_shared")
    assert since(before) == {own: 1, others: THREADS - 1}
    assert requests(fake)["GET /v3/events"] == 1
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
    assert groups() == (passes + 1, events + len(docs) - 1)  # the pass took all but one …
    # … the contact's second event, screened out before it started
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
