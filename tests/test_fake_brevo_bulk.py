"""The fake Brevo's bulk endpoints (tests/fakes/brevo_bulk.py), over HTTP and validated against
the spec: /events/batch with 207 partial failures, /contacts/batch, /contacts/import and
/processes/{id}."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo

KEY = "xkeysib-bulk-0123456789"
LIST = 7


@pytest.fixture
def brevo() -> Iterator[FakeBrevoServer]:
    with running_fake_brevo(api_key=KEY, lists={LIST: "Booked"}) as server:
        yield server


@pytest.fixture
def client(brevo: FakeBrevoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=brevo.base_url, headers={"api-key": KEY}, timeout=5) as client:
        yield client


def event(n: int, email: str = "ada@example.com") -> dict[str, Any]:
    return {
        "event_name": "calendly_invitee_created",
        "identifiers": {"email_id": email},
        "event_properties": {"connector_event_id": f"ev{n}"},
    }


def test_a_batch_of_events_is_accepted_whole_with_202_and_a_count(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    r = client.post("/events/batch", json={"events": [event(n) for n in range(3)]})
    assert r.status_code == 202, r.text
    assert r.json()["count"] == 3
    assert [e["event_properties"]["connector_event_id"] for e in brevo.snapshot()["events"]] == [
        "ev0",
        "ev1",
        "ev2",
    ]
    assert brevo.snapshot()["violations"] == []


def test_a_sticky_400_on_single_events_holds_for_the_same_event_inside_a_batch(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    """The chaos run's permanent failures: a validation error belongs to the event, so the
    event refused alone is refused in a batch too, and a batch item can be the one it fires on."""
    brevo.inject("400", path="^/v3/events$", count=2, sticky="event_properties.connector_event_id")
    assert client.post("/events", json=event(0)).status_code == 400  # fires on ev0
    r = client.post("/events/batch", json={"events": [event(1), event(0), event(2)]})
    assert r.status_code == 207, r.text
    # ev0 again (a repeat), and ev1 is the batch item the second firing lands on
    assert {e["index"] for e in r.json()["errors"]} == {0, 1}
    recorded = [e["event_properties"]["connector_event_id"] for e in brevo.snapshot()["events"]]
    assert recorded == ["ev2"]
    faults = brevo.snapshot()["faults"]
    assert [(f["path"], f["repeat"]) for f in faults] == [
        ("/v3/events", False),
        ("/v3/events/batch", False),
        ("/v3/events/batch", True),
    ]
    assert client.post("/events", json=event(1)).status_code == 400  # stuck both ways
    brevo.clear_faults()
    assert client.post("/events/batch", json={"events": [event(0), event(1)]}).status_code == 202


def test_refused_items_are_named_in_a_207_and_only_the_rest_is_recorded(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    brevo.call(brevo.state.reject_batch_items, "ev1")
    bad_name = event(3) | {"event_name": "not ok!"}
    r = client.post("/events/batch", json={"events": [event(0), event(1), event(2), bad_name]})
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["count"] == 2
    assert [e["index"] for e in body["errors"]] == [1, 3]
    recorded = [e["event_properties"]["connector_event_id"] for e in brevo.snapshot()["events"]]
    assert recorded == ["ev0", "ev2"]


def test_a_batch_over_200_events_or_outside_the_spec_is_refused_and_records_nothing(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    assert (
        client.post("/events/batch", json={"events": [event(n) for n in range(201)]}).status_code
        == 400
    )
    assert client.post("/events/batch", json=[event(0)]).status_code == 400  # v5's bare array
    assert brevo.snapshot()["events"] == []


def test_a_batch_counts_in_the_events_family(brevo: FakeBrevoServer, client: httpx.Client) -> None:
    r = client.post("/events/batch", json={"events": [event(0)]})
    assert r.headers["x-sib-ratelimit-limit"] == str(brevo.state.limits["events"][0])


def test_contacts_batch_updates_existing_contacts_and_refuses_an_unknown_one_whole(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    for email in ("a@example.com", "b@example.com"):
        assert client.post("/contacts", json={"email": email}).status_code == 201
    ok = client.post(
        "/contacts/batch",
        json={
            "contacts": [
                {"email": "a@example.com", "attributes": {"FIRSTNAME": "Ada"}, "listIds": [LIST]},
                {"email": "b@example.com", "unlinkListIds": [LIST]},
            ]
        },
    )
    assert ok.status_code == 204, ok.text
    a = client.get("/contacts/a@example.com").json()
    assert a["attributes"]["FIRSTNAME"] == "Ada" and a["listIds"] == [LIST]
    refused = client.post(
        "/contacts/batch",
        json={
            "contacts": [
                {"email": "a@example.com", "attributes": {"FIRSTNAME": "Changed"}},
                {"email": "nobody@example.com", "attributes": {"FIRSTNAME": "X"}},
            ]
        },
    )
    assert refused.status_code == 400
    assert client.get("/contacts/a@example.com").json()["attributes"]["FIRSTNAME"] == "Ada"


def test_an_import_creates_and_updates_contacts_and_its_process_completes_after_a_poll(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    assert client.post("/contacts", json={"email": "old@example.com"}).status_code == 201
    r = client.post(
        "/contacts/import",
        json={
            "jsonBody": [
                {"email": "new@example.com", "attributes": {"FIRSTNAME": "New", "NOPE": 1}},
                {"email": "old@example.com", "attributes": {"LASTNAME": "Updated"}},
            ],
            "listIds": [LIST],
            "updateExistingContacts": True,
        },
    )
    assert r.status_code == 202, r.text
    process = r.json()["processId"]
    assert client.get(f"/processes/{process}").json()["status"] == "in_process"
    assert client.get(f"/processes/{process}").json()["status"] == "completed"
    new = client.get("/contacts/new@example.com").json()
    assert new["attributes"] == {"FIRSTNAME": "New"} and new["listIds"] == [LIST]
    assert client.get("/contacts/old@example.com").json()["attributes"]["LASTNAME"] == "Updated"
    assert client.get("/processes/999").status_code == 404
    assert brevo.snapshot()["violations"] == []
