"""The fake Brevo behaves like Brevo API v3 where the connector depends on it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient

from tests.fakes.brevo import (
    Attribute,
    FakeBrevo,
    FakeBrevoServer,
    create_fake_brevo_app,
    running_fake_brevo,
)
from tests.fakes.openapi_validation import DEFAULT_SPEC_PATH, load_spec

KEY = "xkeysib-test"
BOOKED, CANCELLED = 10, 11


class ManualClock:
    """A wall clock the test moves by hand (read from the server thread)."""

    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def brevo() -> Iterator[FakeBrevoServer]:
    with running_fake_brevo(
        api_key=KEY,
        lists={BOOKED: "Booked", CANCELLED: "Cancelled"},
        attributes=[Attribute("BOOKED_ON", "date")],
    ) as server:
        yield server


@pytest.fixture
def client(brevo: FakeBrevoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=brevo.base_url, headers={"api-key": KEY}, timeout=5) as client:
        yield client


def upsert(client: httpx.Client, email: str, **fields: Any) -> httpx.Response:
    return client.post("/contacts", json={"email": email, "updateEnabled": True, **fields})


# -- contacts ---------------------------------------------------------------------------------


def test_upsert_answers_201_with_the_id_when_new_and_204_when_it_updates(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    created = upsert(client, "Ada@Example.com", attributes={"FIRSTNAME": "Ada"}, listIds=[BOOKED])
    updated = upsert(client, "ada@example.com", attributes={"LASTNAME": "Lovelace"})

    assert (created.status_code, created.json()) == (201, {"id": 1})
    assert (updated.status_code, updated.content) == (204, b"")
    contact = brevo.state.contact("ADA@example.com")
    assert contact is not None
    assert contact.attributes == {"FIRSTNAME": "Ada", "LASTNAME": "Lovelace"}
    assert contact.list_ids == {BOOKED}
    assert brevo.state.violations == []
    assert brevo.state.response_violations == []


def test_create_without_update_enabled_on_an_existing_email_is_a_duplicate(
    client: httpx.Client,
) -> None:
    upsert(client, "ada@example.com")
    again = client.post("/contacts", json={"email": "ada@example.com"})

    assert again.status_code == 400
    assert again.json()["code"] == "duplicate_parameter"


def test_an_sms_used_by_another_contact_is_a_duplicate_on_create_and_on_update(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    upsert(client, "ada@example.com", attributes={"SMS": "+33612345678"})
    upsert(client, "bob@example.com")

    on_create = upsert(client, "eve@example.com", attributes={"SMS": "0033612345678"})
    on_update = client.put("/contacts/bob@example.com", json={"attributes": {"SMS": "33612345678"}})

    assert on_create.status_code == 400
    assert on_create.json() == {
        "code": "duplicate_parameter",
        "message": "Unable to create contact, SMS is already associated with another Contact",
        "metadata": {"duplicate_identifiers": ["SMS"]},
    }
    assert on_update.status_code == 400
    assert on_update.json()["metadata"] == {"duplicate_identifiers": ["SMS"]}
    assert brevo.state.contact("eve@example.com") is None
    bob = brevo.state.contact("bob@example.com")
    assert bob is not None
    assert "SMS" not in bob.attributes
    assert upsert(client, "eve@example.com").status_code == 201  # the retry without SMS


def test_an_unknown_list_id_on_upsert_is_rejected_and_changes_nothing(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    response = upsert(client, "ada@example.com", listIds=[BOOKED, 999])

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"
    assert brevo.state.contacts == {}
    assert brevo.state.violations == []  # a valid request, just not for this account


def test_unknown_list_ids_can_be_ignored_instead_when_configured() -> None:
    with (
        running_fake_brevo(lists=[BOOKED], unknown_list_policy="ignore") as brevo,
        httpx.Client(base_url=brevo.base_url, headers={"api-key": KEY}) as client,
    ):
        response = upsert(client, "ada@example.com", listIds=[BOOKED, 999])

    assert response.status_code == 201
    assert brevo.state.list_members(BOOKED) == ["ada@example.com"]


def test_get_contact_by_email_or_id_and_404_when_missing(client: httpx.Client) -> None:
    upsert(client, "ada@example.com", listIds=[BOOKED])

    by_email = client.get("/contacts/ada%40example.com")
    by_id = client.get("/contacts/1")
    missing = client.get("/contacts/nobody@example.com")

    assert by_email.status_code == by_id.status_code == 200
    assert by_email.json()["listIds"] == [BOOKED]
    assert by_id.json()["email"] == "ada@example.com"
    assert missing.status_code == 404
    assert missing.json()["code"] == "document_not_found"


def test_put_contact_adds_and_unlinks_lists_and_404s_for_an_unknown_contact(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    upsert(client, "ada@example.com", listIds=[BOOKED])

    moved = client.put(
        "/contacts/ada@example.com", json={"listIds": [CANCELLED], "unlinkListIds": [BOOKED]}
    )
    missing = client.put("/contacts/nobody@example.com", json={"listIds": [BOOKED]})

    assert moved.status_code == 204
    assert brevo.state.list_members(CANCELLED) == ["ada@example.com"]
    assert brevo.state.list_members(BOOKED) == []
    assert missing.status_code == 404


def test_list_add_and_remove_report_success_and_failure_and_404_for_an_unknown_list(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    upsert(client, "ada@example.com")
    add = client.post(
        f"/contacts/lists/{BOOKED}/contacts/add", json={"emails": ["ada@example.com", "x@y.z"]}
    )
    remove = client.post(
        f"/contacts/lists/{BOOKED}/contacts/remove", json={"emails": ["ada@example.com"]}
    )
    unknown = client.post("/contacts/lists/999/contacts/add", json={"emails": ["ada@example.com"]})

    assert (add.status_code, add.json()) == (
        201,
        {"contacts": {"success": ["ada@example.com"], "failure": ["x@y.z"]}},
    )
    assert remove.json() == {"contacts": {"success": ["ada@example.com"], "failure": []}}
    assert unknown.status_code == 404
    assert brevo.state.violations == []
    assert brevo.state.response_violations == []


def test_lists_attributes_and_account_can_be_read_and_created(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    created = client.post("/contacts/lists", json={"name": "No-show", "folderId": 1})
    attribute = client.post("/contacts/attributes/normal/BOOKING_STATUS", json={"type": "text"})

    assert created.json() == {"id": CANCELLED + 1}
    assert attribute.status_code == 201
    names = [a["name"] for a in client.get("/contacts/attributes").json()["attributes"]]
    assert names == ["FIRSTNAME", "LASTNAME", "SMS", "BOOKED_ON", "BOOKING_STATUS"]
    assert client.get("/contacts/lists").json()["count"] == 3
    assert client.get(f"/contacts/lists/{BOOKED}").json()["name"] == "Booked"
    assert client.get("/account").status_code == 200
    assert brevo.state.response_violations == []


def test_undefined_attributes_are_ignored_like_brevo_and_recorded(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    upsert(client, "ada@example.com", attributes={"FIRSTNAME": "Ada", "NOT_THERE": "x"})

    contact = brevo.state.contact("ada@example.com")
    assert contact is not None
    assert contact.attributes == {"FIRSTNAME": "Ada"}
    assert [(i.name, i.reason) for i in brevo.state.ignored_attributes] == [
        ("NOT_THERE", "not defined in the account")
    ]


def test_events_are_recorded_with_identifiers_and_properties(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    upsert(client, "ada@example.com")
    response = client.post(
        "/events",
        json={
            "event_name": "calendly_invitee_created",
            "identifiers": {"email_id": "ada@example.com"},
            "event_properties": {"event_type": "Intro call"},
            "contact_properties": {"FIRSTNAME": "Ada"},
            "event_date": "2024-02-06T20:59:23.383Z",
        },
    )

    assert response.status_code == 204
    [event] = brevo.state.events
    assert event.event_name == "calendly_invitee_created"
    assert event.identifiers == {"email_id": "ada@example.com"}
    assert event.event_properties == {"event_type": "Intro call"}
    assert event.contact_id == 1
    assert brevo.state.contact("ada@example.com").attributes == {"FIRSTNAME": "Ada"}  # type: ignore[union-attr]
    assert brevo.state.requests[-1].family == "events"


def _post_event(client: httpx.Client, name: str, date: str | None, **props: Any) -> None:
    body: dict[str, Any] = {
        "event_name": name,
        "identifiers": {"email_id": "ada@example.com"},
        "event_properties": props,
    }
    if date is not None:
        body["event_date"] = date
    assert client.post("/events", json=body).status_code == 204


def test_get_events_filters_by_name_and_event_date_newest_first_and_pages(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    upsert(client, "ada@example.com")
    _post_event(client, "booked", "2024-02-06T20:59:23.383Z", n=1)
    _post_event(client, "booked", "2024-02-06T21:00:00.000Z", n=2)
    _post_event(client, "cancelled", "2024-02-06T21:00:00.000Z", n=3)
    _post_event(client, "booked", "2024-03-01T08:00:00.000Z", n=4)

    every = client.get("/events", params={"event_name": "booked"}).json()
    assert every["count"] == 3
    assert [e["event_properties"]["n"] for e in every["events"]] == [4, 2, 1]
    assert every["events"][0]["contact_id"] == 1

    window = {"startDate": "2024-02-06T20:59:00Z", "endDate": "2024-02-06T21:00:00Z"}
    both = client.get("/events", params={**window, "event_name": ["booked", "cancelled"]})
    assert sorted(e["event_properties"]["n"] for e in both.json()["events"]) == [1, 2, 3]
    day = client.get("/events", params={"startDate": "2024-02-06", "endDate": "2024-02-06"})
    assert day.json()["count"] == 3
    page = client.get("/events", params={"event_name": "booked", "limit": 1, "offset": 1})
    assert page.json() == {"count": 3, "events": [every["events"][1]]}
    assert brevo.state.requests[-1].family == "other"  # Brevo's 100/h bucket
    assert brevo.state.violations == []


def test_get_events_refuses_half_a_date_range_and_a_limit_over_10000(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    half = client.get("/events", params={"startDate": "2024-02-06"})
    assert half.status_code == 400 and "endDate" in half.json()["message"]
    assert client.get("/events", params={"limit": 10001}).status_code == 400


def test_a_missing_or_wrong_api_key_is_401_and_changes_nothing(
    brevo: FakeBrevoServer,
) -> None:
    body = {"email": "ada@example.com"}
    missing = httpx.post(f"{brevo.base_url}/contacts", json=body)
    wrong = httpx.post(f"{brevo.base_url}/contacts", json=body, headers={"api-key": "nope"})

    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json() == {"code": "unauthorized", "message": "Key not found"}
        assert "x-sib-ratelimit-remaining" in response.headers
    assert brevo.state.contacts == {}


# -- spec validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/contacts", {"email": "ada@example.com", "unlinkListIds": [10]}, "unlinkListIds"),
        ("/contacts", {"email": "ada@example.com", "listIds": ["10"]}, "listIds/0"),
        ("/contacts", {"email": "not-an-email"}, "email"),
        (
            "/contacts",
            {"email": "a@example.com", "attributes": {"BOOKED_ON": "2024-02-06T10:00"}},
            "BOOKED_ON",
        ),
        ("/events", {"event_name": "booked", "identifiers": {}}, "non-empty"),
        (
            "/events",
            {"event_name": "has space", "identifiers": {"email_id": "a@b.c"}},
            "event_name",
        ),
        ("/contacts/lists/10/contacts/add", {}, "exactly one"),
    ],
)
def test_a_request_the_spec_does_not_allow_is_400_and_a_recorded_violation(
    brevo: FakeBrevoServer, client: httpx.Client, path: str, body: Any, expected: str
) -> None:
    response = client.post(path, json=body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"
    assert expected in response.json()["message"]
    [violation] = brevo.state.violations
    assert violation.path == f"/v3{path}"
    assert brevo.state.contacts == {}
    assert brevo.state.events == []


def test_a_path_outside_the_spec_is_404_and_an_unimplemented_one_is_501(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    assert client.get("/no/such/thing").status_code == 404
    assert client.delete("/contacts/lists/5").status_code == 501
    assert len(brevo.state.violations) == 2


def test_the_spec_is_parsed_once_per_process() -> None:
    assert load_spec() is load_spec()


def test_the_vendored_spec_is_brevos_file_byte_for_byte() -> None:
    digest = hashlib.sha256(DEFAULT_SPEC_PATH.read_bytes()).hexdigest()
    assert digest == "dca52e349cede95b91a9ef002be789c1a398914eeff6a252b93c51a641ae16d4"
    reference = Path(__file__).resolve().parents[2] / "shared/reference/brevo-openapi.yaml"
    if reference.exists():  # the project's reference folder, beside the repository
        assert reference.read_bytes() == DEFAULT_SPEC_PATH.read_bytes()


# -- rate limits ------------------------------------------------------------------------------


def test_over_the_limit_is_429_with_headers_until_the_window_resets() -> None:
    clock = ManualClock()
    with (
        running_fake_brevo(clock=clock, limits={"contacts": (2, 1.0)}) as brevo,
        httpx.Client(base_url=brevo.base_url, headers={"api-key": KEY}) as client,
    ):
        answers = [client.get("/contacts/nobody@example.com") for _ in range(3)]
        clock.now += 1.0
        after_reset = client.get("/contacts/nobody@example.com")
        other_family = client.get("/account")

    assert [a.status_code for a in answers] == [404, 404, 429]
    assert answers[2].json()["code"] == "too_many_requests"
    assert [a.headers["x-sib-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert {a.headers["x-sib-ratelimit-limit"] for a in answers} == {"2"}
    assert answers[2].headers["x-sib-ratelimit-reset"] == "1"
    assert "retry-after" not in answers[2].headers
    assert after_reset.status_code == 404
    assert after_reset.headers["x-sib-ratelimit-remaining"] == "1"
    assert other_family.headers["x-sib-ratelimit-limit"] == "100"
    assert brevo.state.rate_limited == {"contacts": 1, "events": 0, "other": 0}


def test_windows_align_to_their_length_and_reset_counts_whole_seconds() -> None:
    clock = ManualClock(now=7200.0 + 1000.4)  # 1000.4 s into an hour
    with (
        running_fake_brevo(clock=clock) as brevo,
        httpx.Client(base_url=brevo.base_url, headers={"api-key": KEY}) as client,
    ):
        response = client.get("/account")

    assert response.headers["x-sib-ratelimit-reset"] == "2600"  # ceil(3600 - 1000.4)
    assert response.headers["x-sib-ratelimit-remaining"] == "99"


def test_limits_can_change_while_the_server_runs(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    brevo.set_limit("events", 1, 60)
    event = {"event_name": "x", "identifiers": {"email_id": "a@example.com"}}

    first, second = client.post("/events", json=event), client.post("/events", json=event)

    assert (first.status_code, second.status_code) == (204, 429)
    assert first.headers["x-sib-ratelimit-limit"] == "1"
    assert len(brevo.state.events) == 1
    assert brevo.state.rate_limited["events"] == 1


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("5xx", 503), ("429", 429), ("400", 400)])
def test_an_injected_error_answers_its_status_and_applies_nothing(
    brevo: FakeBrevoServer, client: httpx.Client, kind: str, status: int
) -> None:
    brevo.inject(kind, family="contacts", count=1, status=503 if kind == "5xx" else None)

    failed = upsert(client, "ada@example.com")
    retried = upsert(client, "ada@example.com")

    assert failed.status_code == status
    assert retried.status_code == 201
    [fault] = brevo.state.faults
    assert (fault.kind, fault.status, fault.effect_applied) == (kind, status, False)
    assert fault.request_seq == brevo.state.requests[0].seq
    assert brevo.state.requests[0].fault == kind
    assert brevo.state.rate_limited["contacts"] == 0  # injected 429s are faults, not limits


def test_5xx_faults_pick_500_502_or_503_deterministically_from_the_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with (
            running_fake_brevo(seed=seed) as brevo,
            httpx.Client(base_url=brevo.base_url, headers={"api-key": KEY}) as client,
        ):
            brevo.inject("5xx", path=r"/contacts/", probability=0.5)
            return [client.get("/contacts/1").status_code for _ in range(8)]

    first, again = statuses(seed=7), statuses(seed=7)

    assert first == again
    assert set(first) <= {404, 500, 502, 503}
    assert len(set(first)) > 1


def test_a_slow_fault_delays_the_answer_and_still_applies_it(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    brevo.inject("slow", path=r"/contacts$", delay=0.3, count=1)

    started = time.monotonic()
    response = upsert(client, "ada@example.com")

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 201
    assert brevo.state.faults[0].effect_applied is True


def test_a_timeout_fault_holds_the_request_and_by_default_applies_nothing(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    brevo.inject("timeout", family="contacts", delay=5, count=1)

    with pytest.raises(httpx.ReadTimeout):
        client.post("/contacts", json={"email": "ada@example.com"}, timeout=0.3)

    assert brevo.state.contact("ada@example.com") is None
    assert brevo.state.faults[0].effect_applied is False


def test_a_timeout_fault_can_apply_the_effect_before_the_client_gives_up(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    brevo.inject("timeout", family="contacts", delay=5, count=1, apply_effect=True)

    with pytest.raises(httpx.ReadTimeout):
        client.post("/contacts", json={"email": "ada@example.com"}, timeout=0.3)

    assert brevo.state.contact("ada@example.com") is not None
    assert brevo.state.faults[0].effect_applied is True
    assert upsert(client, "ada@example.com").status_code == 204  # the client's retry


def test_a_sticky_fault_answers_the_same_key_again_until_cleared(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    brevo.inject("400", path="^/v3/events$", count=1, sticky="event_properties.id")

    def post(event_id: str) -> int:
        body = {"event_name": "e", "identifiers": {"email_id": "a@example.com"}}
        return client.post(
            "/events", json={**body, "event_properties": {"id": event_id}}
        ).status_code

    assert [post("one"), post("one"), post("two"), post("one")] == [400, 400, 204, 400]
    faults = brevo.snapshot()["faults"]
    assert [f["repeat"] for f in faults] == [False, True, True]
    brevo.clear_faults()
    assert post("one") == 204


def test_a_fault_is_not_applied_to_requests_it_does_not_match(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    brevo.inject("5xx", family="events", method="POST")

    assert upsert(client, "ada@example.com").status_code == 201
    assert brevo.state.faults == []


# -- control API, CLI, async use ----------------------------------------------------------------


def test_the_control_api_drives_and_reports_the_fake(brevo: FakeBrevoServer) -> None:
    with httpx.Client(base_url=f"{brevo.url}/__fake__") as control:
        assert control.post("/lists", json={"name": "No-show", "id": 30}).json() == {"id": 30}
        control.post("/limits", json={"family": "contacts", "limit": 50, "window_seconds": 1})
        rule = control.post("/faults", json={"kind": "5xx", "count": 1, "status": 502}).json()
        bad = control.post("/faults", json={"kind": "explode"})

        with httpx.Client(base_url=brevo.base_url, headers={"api-key": KEY}) as client:
            assert upsert(client, "ada@example.com", listIds=[30]).status_code == 502
            assert upsert(client, "ada@example.com", listIds=[30]).status_code == 201
        state = control.get("/state").json()
        control.post("/reset")
        after_reset = control.get("/state").json()

    assert rule["kind"] == "5xx"
    assert bad.status_code == 400
    assert state["lists"][-1] == {
        "id": 30,
        "name": "No-show",
        "folderId": 1,
        "members": ["ada@example.com"],
    }
    assert state["limits"]["contacts"] == [50, 1.0]
    assert state["counts"]["requests"]["contacts"] == {"502": 1, "201": 1}
    assert [f["status"] for f in state["faults"]] == [502]
    assert state["violations"] == []
    assert state["rate_limited"]["contacts"] == 0
    assert after_reset["contacts"] == []
    assert after_reset["faults"] == []
    assert [lst["id"] for lst in after_reset["lists"]] == [BOOKED, CANCELLED]


def test_the_module_serves_the_fake_from_the_command_line() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.brevo",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--lists",
            "10,11",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.split()[4]
        lists = httpx.get(f"{base_url}/contacts/lists", headers={"api-key": KEY}).json()
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/v3")
    assert sorted(lst["id"] for lst in lists["lists"]) == [10, 11]


async def test_the_server_works_under_async_with_in_async_tests() -> None:
    async with (
        FakeBrevoServer(FakeBrevo(api_key=KEY)) as brevo,
        httpx.AsyncClient(base_url=brevo.base_url, headers={"api-key": KEY}) as client,
    ):
        response = await client.post("/contacts", json={"email": "ada@example.com"})

    assert response.status_code == 201


async def test_the_app_runs_in_process_under_aiohttp_client(aiohttp_client: Any) -> None:
    state = FakeBrevo(api_key=KEY)
    client: TestClient[Any, Any] = await aiohttp_client(create_fake_brevo_app(state))

    response = await client.post(
        "/v3/contacts", json={"email": "ada@example.com"}, headers={"api-key": KEY}
    )

    assert response.status == 201
    assert state.contact("ada@example.com") is not None


def test_deleting_a_contact_answers_204_then_404(
    brevo: FakeBrevoServer, client: httpx.Client
) -> None:
    client.post("/contacts", json={"email": "del@example.com"})
    assert client.delete("/contacts/del@example.com").status_code == 204
    assert client.delete("/contacts/del@example.com").status_code == 404
    assert brevo.snapshot()["violations"] == []
