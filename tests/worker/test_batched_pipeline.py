"""The pipeline with coalescing (``brevo.batch``) over HTTP against the fake Brevo, worker
threads processing events at once as Dramatiq's do (a message is retried until it is done):

- concurrent events share bulk requests, and every custom event reaches Brevo exactly once;
- updates of contacts the connector pushed before go out through ``/contacts/batch``;
- a 207's refused event is dead-lettered with Brevo's reason while the rest of its batch is sent;
- a batch whose answer was lost is looked up before any resend: nothing fires twice;
- a contact deleted by hand in Brevo makes its batch fail as a whole; it is re-created one by one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.brevo.coalesced import CoalescingBrevo
from calendly_brevo.errors import TransientError
from calendly_brevo.events import parse_envelope, read_event
from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.ledger.memory import MemoryLedger
from tests import payloads
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo
from worker.pipeline import Pipeline

KEY = "xkeysib-batched-0123456789"
ATTRIBUTES = {
    "FIRSTNAME": "text",
    "COMPANY": "text",
    "JOB_TITLE": "text",
    "CALENDLY_EVENT_TYPE": "text",
    "MEETING_DATE": "date",
    "BOOKING_STATUS": "text",
}
THREADS = 8
ATTEMPTS = 12


@pytest.fixture
def fake() -> Iterator[FakeBrevoServer]:
    with running_fake_brevo(api_key=KEY, lists={10: "Discovery", 11: "Demo"}) as server:
        for name, kind in ATTRIBUTES.items():
            server.add_attribute(name, kind)
        for family in ("contacts", "events", "other"):  # about batching, not pacing
            server.set_limit(family, 1000, 1.0)
        yield server


@pytest.fixture
def clients() -> Iterator[list[BrevoClient]]:
    """The Brevo clients a test made, closed after it."""
    made: list[BrevoClient] = []
    yield made
    for client in made:
        client.close()


def pipeline(
    fake: FakeBrevoServer,
    clients: list[BrevoClient],
    *,
    window_ms: int = 300,
    max_events: int = 100,
    live_imports: bool = False,
    contacts: dict[str, float] | None = None,
) -> Pipeline:
    """``contacts``: the worker's bucket for the contacts family (default: never the limit)."""
    batch = {"window_ms": window_ms, "max_events": max_events, "live_imports": live_imports}
    settings = payloads.settings(
        brevo={
            "api_key": KEY,
            "api_url": fake.base_url,
            "timeout_seconds": 1.0,
            "batch": batch,
            # The in-doubt lookups (GET /events) are "other" calls: Brevo allows 100 an hour,
            # here more, as these tests are about batching, not pacing.
            "rate_limits": {
                f: {"rate": 1000, "burst": 1000} for f in ("contacts", "events", "other")
            }
            | ({"contacts": contacts} if contacts else {}),
        }
    )
    client = BrevoClient.from_settings(settings)
    clients.append(client)
    port = CoalescingBrevo(client, settings.brevo.batch, patience=10)
    return Pipeline(settings, MemoryLedger(), port)


def run(pipe: Pipeline, bodies: list[str]) -> list[str]:
    """Each body on a worker thread, retried like a Dramatiq message until it is done."""

    def one(body: str) -> str:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return pipe.process(body, 1.0, attempt=attempt, final=attempt == ATTEMPTS).status
            except TransientError:
                continue
        raise AssertionError("unreachable: the last attempt dead-letters")

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, bodies))


def people(make: Any, n: int, prefix: str = "ada") -> list[dict[str, Any]]:
    """``n`` envelopes from ``make`` (a :mod:`tests.payloads` builder), one person each."""
    return [
        make(
            email=f"{prefix}{i}@example.com",
            invitee_uri=payloads.invitee_uri(f"EV{prefix}{i}", f"IN{i}"),
        )
        for i in range(n)
    ]


def created(n: int) -> list[dict[str, Any]]:
    return people(payloads.invitee_created, n)


def canceled(n: int) -> list[dict[str, Any]]:
    return people(payloads.invitee_canceled, n)


def bodies(envelopes: list[dict[str, Any]]) -> list[str]:
    return [payloads.body(e).decode() for e in envelopes]


def event_id(body: str) -> str:
    return read_event(parse_envelope(body)).identity.event_id


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(fake: FakeBrevoServer) -> Counter[str]:
    return Counter(f"{r['method']} {r['path']}" for r in fake.snapshot()["requests"])


def sent_ids(fake: FakeBrevoServer) -> Counter[str]:
    return Counter(e["event_properties"]["connector_event_id"] for e in fake.snapshot()["events"])


def test_concurrent_events_share_bulk_requests_and_each_is_sent_once(
    fake: FakeBrevoServer, clients: list[BrevoClient]
) -> None:
    docs = bodies(created(24))
    pipe = pipeline(fake, clients)
    assert run(pipe, docs) == ["applied"] * 24
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    calls = requests(fake)
    assert calls["POST /v3/events/batch"] >= 1
    assert calls["POST /v3/events/batch"] + calls["POST /v3/events"] < 24
    # Each event's trace shows the request that carried its custom event, whichever thread
    # sent the batch.
    carried = []
    for b in docs:
        row = pipe.ledger.event(event_id(b))
        assert row is not None
        routes = [c["route"] for c in row.calls if c["method"] == "POST"]
        assert "/contacts" in routes and ("/events/batch" in routes or "/events" in routes)
        carried.append("/events/batch" in routes)
    assert sum(carried) > calls["POST /v3/events/batch"]  # shared with the calls it carried
    assert calls["POST /v3/contacts"] == 24  # new contacts: the single upsert creates them
    assert fake.snapshot()["violations"] == []


def test_with_live_imports_first_time_contacts_are_imported_and_each_event_follows_its_contact(
    fake: FakeBrevoServer, clients: list[BrevoClient]
) -> None:
    # Brevo applies an import half a second after taking it: an event sent before the read
    # back shows its contact would reach Brevo ahead of the contact.
    fake.call(setattr, fake.state, "import_delay_seconds", 0.5)
    docs = bodies(created(24))
    # A busy contacts family (5 calls/s, one at a time): a contact that finds no token free
    # waits for an import instead of its own call.
    pipe = pipeline(fake, clients, live_imports=True, contacts={"rate": 5, "burst": 1})
    assert run(pipe, docs) == ["applied"] * 24
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    calls = requests(fake)
    assert calls["POST /v3/contacts/import"] >= 1
    assert calls["POST /v3/contacts"] < 24  # not one create per contact
    events = fake.snapshot()["events"]
    assert len(events) == 24 and all(e["contact_id"] is not None for e in events)
    contacts = {c["email"]: c for c in fake.snapshot()["contacts"]}
    assert len(contacts) == 24 and all(c["listIds"] == [10] for c in contacts.values())
    assert fake.snapshot()["violations"] == []


def test_with_live_imports_a_first_time_contact_that_finds_a_token_free_is_created_at_once(
    fake: FakeBrevoServer, clients: list[BrevoClient]
) -> None:
    # Tokens to spare: a single create costs nothing anyone waits for, and is the quickest.
    pipe = pipeline(fake, clients, live_imports=True)
    assert run(pipe, bodies(created(THREADS))) == ["applied"] * THREADS
    calls = requests(fake)
    assert calls["POST /v3/contacts"] == THREADS
    assert calls["POST /v3/contacts/import"] == 0
    assert len(fake.snapshot()["contacts"]) == THREADS


def test_contacts_pushed_before_are_updated_through_contacts_batch(
    fake: FakeBrevoServer, clients: list[BrevoClient]
) -> None:
    pipe = pipeline(fake, clients)
    run(pipe, bodies(created(16)))
    assert run(pipe, bodies(canceled(16))) == ["applied"] * 16
    calls = requests(fake)
    assert calls["POST /v3/contacts/batch"] >= 1
    assert calls["POST /v3/contacts"] == 16  # only the creations
    statuses = {
        c["email"]: c["attributes"].get("BOOKING_STATUS") for c in fake.snapshot()["contacts"]
    }
    assert set(statuses.values()) == {"cancelled"}
    assert len(statuses) == 16
    assert fake.snapshot()["violations"] == []


def test_a_refused_item_is_dead_lettered_with_brevos_reason_and_the_rest_are_sent(
    fake: FakeBrevoServer, clients: list[BrevoClient]
) -> None:
    docs = bodies(created(THREADS))
    refused = {event_id(docs[1]), event_id(docs[5])}
    fake.call(fake.state.reject_batch_items, *refused)
    # A long window and a batch as large as the threads: the eight events go out together.
    pipe = pipeline(fake, clients, window_ms=2000, max_events=THREADS)
    partial = metric("calendly_brevo_brevo_batches_total", endpoint="events", outcome="partial")
    outcomes = run(pipe, docs)
    assert Counter(outcomes) == Counter({"applied": THREADS - 2, "dead_lettered": 2})
    assert requests(fake)["POST /v3/events/batch"] == 1
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs if event_id(b) not in refused})
    letters = pipe.ledger.dead_letters(DeadLetterFilter())
    assert {d.event_id for d in letters} == refused
    assert all("refused (207): Injected item failure" in (d.error or "") for d in letters)
    after = metric("calendly_brevo_brevo_batches_total", endpoint="events", outcome="partial")
    assert after == partial + 1


def test_a_batch_whose_answer_was_lost_is_looked_up_and_never_sent_twice(
    fake: FakeBrevoServer, clients: list[BrevoClient]
) -> None:
    docs = bodies(created(THREADS))
    # Brevo takes the batch, the answer never comes (held past the client's 1 s timeout).
    fake.inject("timeout", path=r"^/v3/events/batch$", count=1, delay=2.0, apply_effect=True)
    doubted = metric("calendly_brevo_brevo_batch_items_in_doubt_total", endpoint="events")
    outcomes = run(pipeline(fake, clients, window_ms=2000, max_events=THREADS), docs)
    assert outcomes == ["applied"] * THREADS
    assert sent_ids(fake) == Counter({event_id(b): 1 for b in docs})
    assert requests(fake)["GET /v3/events"] >= 1  # the in-doubt lookups
    in_doubt = metric("calendly_brevo_brevo_batch_items_in_doubt_total", endpoint="events")
    assert in_doubt == doubted + THREADS


def test_a_contact_deleted_by_hand_is_recreated_when_its_batch_is_refused(
    fake: FakeBrevoServer, clients: list[BrevoClient]
) -> None:
    pipe = pipeline(fake, clients)
    run(pipe, bodies(created(6)))
    with httpx.Client(base_url=fake.base_url, headers={"api-key": KEY}) as http:
        assert http.delete("/contacts/ada3@example.com").status_code == 204
    assert run(pipe, bodies(canceled(6))) == ["applied"] * 6
    statuses = {
        c["email"]: c["attributes"].get("BOOKING_STATUS") for c in fake.snapshot()["contacts"]
    }
    assert statuses == {f"ada{i}@example.com": "cancelled" for i in range(6)}
    assert fake.snapshot()["violations"] == []
