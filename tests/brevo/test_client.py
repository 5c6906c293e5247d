"""The Brevo client against ``httpx.MockTransport``: what it sends, how it reads every answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from calendly_brevo.brevo import (
    BrevoClient,
    ListChange,
    RateLimitHeaders,
    UpsertResult,
    family_of,
    make_http_client,
    redact,
)
from calendly_brevo.brevo.transport import NotFreeNow
from calendly_brevo.config import BrevoSettings, Bucket, Settings
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError, RateLimited
from calendly_brevo.pii import mask_email
from calendly_brevo.ratelimit import MemoryBackend, TokenBucket

API_KEY = "xkeysib-0123456789abcdef-SECRET"
BASE = "https://api.brevo.com/v3"
EMAIL = "jane.doe@example.com"

Answer = httpx.Response | Exception


@dataclass
class FakeBrevo:
    """Answers queued in order; every request kept. An exception in the queue is raised."""

    answers: list[Answer] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            return httpx.Response(204)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, **extra})


def limited(status: int = 200, *, remaining: int, reset: str, limit: int = 10) -> httpx.Response:
    headers = {
        "x-sib-ratelimit-limit": str(limit),
        "x-sib-ratelimit-remaining": str(remaining),
        "x-sib-ratelimit-reset": reset,
    }
    return httpx.Response(status, headers=headers, json={} if status != 204 else None)


@pytest.fixture
def brevo() -> FakeBrevo:
    return FakeBrevo()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> TokenBucket:
    buckets = {f: Bucket(rate=10, burst=10) for f in ("contacts", "events", "other")}
    return TokenBucket(MemoryBackend(clock=clock), buckets, clock=clock, sleep=clock.sleep)


@pytest.fixture
def make_client(brevo: FakeBrevo, limiter: TokenBucket) -> Iterator[Callable[..., BrevoClient]]:
    http = httpx.Client(base_url=BASE, transport=httpx.MockTransport(brevo))

    def make(**kwargs: Any) -> BrevoClient:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("limiter", limiter)
        return BrevoClient(http, kwargs.pop("api_key"), kwargs.pop("limiter"), **kwargs)

    yield make
    http.close()


@pytest.fixture
def client(make_client: Callable[..., BrevoClient]) -> BrevoClient:
    return make_client()


def one_per_second(clock: FakeClock) -> TokenBucket:
    """A bucket of one token a second (burst 1) for contacts and events, on ``clock``."""
    buckets = {f: Bucket(rate=1, burst=1) for f in ("contacts", "events")}
    return TokenBucket(MemoryBackend(clock=clock), buckets, clock=clock, sleep=clock.sleep)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"calendly_brevo_{name}", labels) or 0.0


# -- upsert --------------------------------------------------------------------------------------
def test_an_upsert_that_creates_the_contact_reports_created_and_its_id(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers.append(httpx.Response(201, json={"id": 42}))
    before = sample("brevo_requests_total", family="contacts", status="201")

    result = client.upsert_contact(EMAIL, {"FIRSTNAME": "Jane"}, list_ids=[3, 4])

    assert result == UpsertResult(created=True, contact_id=42)
    (request,) = brevo.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/contacts")
    assert request.headers["api-key"] == API_KEY
    assert brevo.bodies()[0] == {
        "email": EMAIL,
        "attributes": {"FIRSTNAME": "Jane"},
        "updateEnabled": True,
        "listIds": [3, 4],
    }
    assert sample("brevo_requests_total", family="contacts", status="201") == before + 1


def test_an_upsert_that_updates_an_existing_contact_reports_not_created(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers.append(httpx.Response(204))
    assert client.upsert_contact(EMAIL, {}) == UpsertResult(created=False, contact_id=None)


def test_list_removals_follow_the_upsert_as_a_put_because_post_ignores_them(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    client.upsert_contact("jo+tag@example.com", {"X": 1}, list_ids=[3], unlink_list_ids=[7])

    post, put = brevo.requests
    assert post.method == "POST"
    assert "unlinkListIds" not in brevo.bodies()[0]
    assert put.method == "PUT"
    assert put.url.raw_path == b"/v3/contacts/jo%2Btag%40example.com"
    assert brevo.bodies()[1] == {"unlinkListIds": [7]}


def test_a_contact_brevo_just_created_needs_no_list_removal_call(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers.append(httpx.Response(201, json={"id": 7}))
    client.upsert_contact(EMAIL, {"X": 1}, list_ids=[3], unlink_list_ids=[7, 8])
    (post,) = brevo.requests
    assert post.method == "POST"


def test_update_sends_only_what_changes_and_nothing_when_nothing_does(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    client.update_contact(EMAIL)
    assert brevo.requests == []
    client.update_contact("ext-1", {"A": "b"}, identifier_type="ext_id")
    assert brevo.requests[0].url.params["identifierType"] == "ext_id"
    assert brevo.bodies() == [{"attributes": {"A": "b"}}]


def test_get_contact_returns_the_contact_or_none_when_brevo_does_not_know_it(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers += [
        httpx.Response(200, json={"id": 5, "email": EMAIL}),
        error(404, "document_not_found", "Contact does not exist"),
    ]
    assert client.get_contact(EMAIL) == {"id": 5, "email": EMAIL}
    assert client.get_contact("nobody@example.com") is None


# -- SMS conflicts -------------------------------------------------------------------------------
SMS_TAKEN = {
    "code": "duplicate_parameter",
    "message": "Unable to create contact, SMS is already associated with another Contact",
    "metadata": {"duplicate_identifiers": ["SMS"]},
}


def test_an_sms_conflict_is_retried_once_with_the_number_in_the_fallback_attribute(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers += [httpx.Response(400, json=SMS_TAKEN), httpx.Response(204)]

    result = client.upsert_contact(EMAIL, {"FIRSTNAME": "Jane", "SMS": "+31612345678"})

    assert result == UpsertResult(created=False, contact_id=None)
    first, second = brevo.bodies()
    assert first["attributes"]["SMS"] == "+31612345678"
    assert second["attributes"] == {"FIRSTNAME": "Jane", "PHONE_TEXT": "+31612345678"}


def test_an_sms_conflict_is_retried_only_once(client: BrevoClient, brevo: FakeBrevo) -> None:
    brevo.answers += [httpx.Response(400, json=SMS_TAKEN), httpx.Response(400, json=SMS_TAKEN)]
    with pytest.raises(BrevoPermanentError) as caught:
        client.upsert_contact(EMAIL, {"SMS": "+31612345678"})
    assert caught.value.brevo_code == "duplicate_parameter"
    assert len(brevo.requests) == 2


def test_an_update_sms_conflict_reported_as_invalid_parameter_also_falls_back(
    make_client: Callable[..., BrevoClient], brevo: FakeBrevo
) -> None:
    client = make_client(sms_fallback_attribute="PHONE")
    message = "Unable to update contact, SMS or EXT_ID are already associated with another Contact"
    brevo.answers += [error(400, "invalid_parameter", message), httpx.Response(204)]
    client.update_contact(EMAIL, {"SMS": "+31612345678"})
    assert brevo.bodies()[1] == {"attributes": {"PHONE": "+31612345678"}}


def test_an_email_conflict_is_not_retried(client: BrevoClient, brevo: FakeBrevo) -> None:
    brevo.answers.append(
        error(
            400,
            "duplicate_parameter",
            "email is already associated with another Contact",
            metadata={"duplicate_identifiers": ["email"]},
        )
    )
    with pytest.raises(BrevoPermanentError, match="duplicate_parameter: email is already"):
        client.upsert_contact(EMAIL, {"SMS": "+31612345678"})
    assert len(brevo.requests) == 1


# -- events, lists, setup ------------------------------------------------------------------------
def test_create_event_sends_brevos_event_shape_under_the_events_family(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    before = sample("brevo_requests_total", family="events", status="204")
    client.create_event(
        "calendly_invitee_created",
        email=EMAIL,
        properties={"event_type": "Intro"},
        contact_properties={"FIRSTNAME": "Jane"},
        event_date=datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
    )
    assert str(brevo.requests[0].url) == f"{BASE}/events"
    assert brevo.bodies()[0] == {
        "event_name": "calendly_invitee_created",
        "identifiers": {"email_id": EMAIL},
        "contact_properties": {"FIRSTNAME": "Jane"},
        "event_properties": {"event_type": "Intro"},
        "event_date": "2024-05-01T09:30:00+00:00",
    }
    assert sample("brevo_requests_total", family="events", status="204") == before + 1


def _events_page(count: int, *ids: str) -> httpx.Response:
    events = [{"event_name": "booked", "event_properties": {"connector_event_id": i}} for i in ids]
    return httpx.Response(200, json={"count": count, "events": events})


def test_event_recorded_looks_in_a_window_around_the_event_date_and_pages(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers = [_events_page(150, *["other"] * 100), _events_page(150, "x", "mine")]
    found = client.event_recorded(
        "booked",
        event_date="2024-05-01T09:30:00.000Z",
        property_name="connector_event_id",
        property_value="mine",
    )
    assert found
    first, second = (dict(r.url.params) for r in brevo.requests)
    assert first == {
        "event_name": "booked",
        "startDate": "2024-05-01T09:29:00.000Z",
        "endDate": "2024-05-01T09:31:00.000Z",
        "limit": "100",
        "offset": "0",
    }
    assert second["offset"] == "100"


def test_event_recorded_is_false_when_no_page_has_it(client: BrevoClient, brevo: FakeBrevo) -> None:
    brevo.answers = [_events_page(2, "a", "b")]
    assert not client.event_recorded(
        "booked", event_date=None, property_name="connector_event_id", property_value="mine"
    )
    assert len(brevo.requests) == 1 and "startDate" not in brevo.requests[0].url.params


def test_a_scan_without_a_value_to_stop_at_reads_the_whole_window(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers = [_events_page(150, "mine", *["other"] * 99), _events_page(150, "x", "y")]
    scan = client.scan_events(
        "booked", event_date="2024-05-01T09:30:00.000Z", property_name="connector_event_id"
    )
    assert len(brevo.requests) == 2  # past the page that holds "mine": the others' values too
    assert scan.values == {"mine", "other", "x", "y"} and scan.complete
    assert scan.covers("booked", "2024-05-01T09:30:00.000Z")
    assert scan.covers("booked", "2024-05-01T09:30:00+00:00")
    assert not scan.covers("booked", "2024-05-01T09:30:01Z")  # its own window reaches past
    assert not scan.covers("booked", None)
    assert not scan.covers("cancelled", "2024-05-01T09:30:00Z")


def test_a_scan_stopped_at_its_value_cannot_say_what_it_did_not_read(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers = [_events_page(150, "mine", *["other"] * 99), _events_page(150, "x")]
    scan = client.scan_events(
        "booked",
        event_date="2024-05-01T09:30:00.000Z",
        property_name="connector_event_id",
        until="mine",
    )
    assert len(brevo.requests) == 1 and "mine" in scan.values
    assert not scan.complete and not scan.covers("booked", "2024-05-01T09:30:00.000Z")


@pytest.mark.parametrize(
    ("body", "complete"),
    [({"count": 0, "events": []}, True), ({}, True), ({"events": "?"}, False), ([], False)],
    ids=["empty", "empty_object", "unreadable_events", "not_an_object"],
)
def test_a_scan_answers_for_others_only_when_it_read_an_answer_to_its_end(
    client: BrevoClient, brevo: FakeBrevo, body: Any, complete: bool
) -> None:
    brevo.answers = [httpx.Response(200, json=body)]
    scan = client.scan_events("booked", event_date=None, property_name="connector_event_id")
    assert scan.values == frozenset() and scan.complete is complete


@pytest.mark.parametrize(
    ("answer", "maybe_applied"),
    [
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("connect timed out"), False),
        (httpx.Response(504, text="Gateway Timeout"), True),
        (httpx.Response(503, text="Unavailable"), False),
        (error(429, "too_many_requests", "slow down"), False),
    ],
)
def test_a_failed_call_says_whether_brevo_may_have_applied_it(
    client: BrevoClient, brevo: FakeBrevo, answer: Answer, maybe_applied: bool
) -> None:
    brevo.answers = [answer]
    with pytest.raises(BrevoTransientError) as failed:
        client.create_event("booked", email=EMAIL)
    assert failed.value.maybe_applied is maybe_applied


def test_list_changes_go_in_chunks_of_150_and_collect_brevos_report(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    emails = [f"p{i}@example.com" for i in range(151)]
    brevo.answers += [
        httpx.Response(
            201, json={"contacts": {"success": emails[:149], "failure": emails[149:150]}}
        ),
        httpx.Response(201, json={"contacts": {"success": emails[150:], "failure": []}}),
    ]
    change = client.add_to_list(12, emails)
    assert change == ListChange(success=emails[:149] + emails[150:], failure=[emails[149]])
    assert [len(b["emails"]) for b in brevo.bodies()] == [150, 1]
    assert brevo.requests[0].url.path == "/v3/contacts/lists/12/contacts/add"


def test_removing_contacts_that_are_not_in_the_list_is_a_reported_no_op(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers.append(
        error(400, "invalid_parameter", "Contact is already removed from the selected list")
    )
    assert client.remove_from_list(12, [EMAIL]) == ListChange(success=[], failure=[EMAIL])
    assert brevo.requests[0].url.path == "/v3/contacts/lists/12/contacts/remove"


def test_setup_calls_read_attributes_lists_and_account_and_create_attributes(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    page1 = [{"id": i, "name": f"L{i}"} for i in range(50)]
    brevo.answers += [
        httpx.Response(200, json={"attributes": [{"name": "FIRSTNAME", "category": "normal"}]}),
        httpx.Response(200, json={"lists": page1, "count": 51}),
        httpx.Response(200, json={"lists": [{"id": 50, "name": "L50"}], "count": 51}),
        httpx.Response(200, json={"email": "owner@example.com"}),
        httpx.Response(201),
    ]
    assert client.get_attributes() == [{"name": "FIRSTNAME", "category": "normal"}]
    assert [x["id"] for x in client.get_lists()] == list(range(51))
    assert client.get_account() == {"email": "owner@example.com"}
    client.create_attribute("category", "BOOKING_STATUS", "category", [(1, "booked")])

    offsets = [r.url.params.get("offset") for r in brevo.requests[1:3]]
    assert offsets == ["0", "50"]
    assert brevo.requests[4].url.path == "/v3/contacts/attributes/category/BOOKING_STATUS"
    assert brevo.bodies()[4] == {
        "type": "category",
        "enumeration": [{"value": 1, "label": "booked"}],
    }


@pytest.mark.parametrize(
    ("method", "path", "family"),
    [
        ("POST", "/contacts", "contacts"),
        ("GET", "/contacts/attributes", "contacts"),
        ("POST", "/contacts/lists/{list_id}/contacts/add", "contacts"),
        ("POST", "/events", "events"),
        ("GET", "/events", "other"),
        ("GET", "/account", "other"),
        ("GET", "/contactsx", "other"),
    ],
)
def test_each_call_belongs_to_brevos_limit_family(method: str, path: str, family: str) -> None:
    assert family_of(method, path) == family


# -- rate limits ---------------------------------------------------------------------------------
def test_every_request_takes_a_token_of_its_family_first(
    make_client: Callable[..., BrevoClient], brevo: FakeBrevo, clock: FakeClock
) -> None:
    tight = one_per_second(clock)
    client = make_client(limiter=tight, max_wait=0.5)
    client.upsert_contact(EMAIL, {})
    client.create_event("e", email=EMAIL)  # another family: its own token
    with pytest.raises(RateLimited):
        client.upsert_contact(EMAIL, {})
    assert len(brevo.requests) == 2


def test_under_if_free_now_only_the_next_request_goes_and_only_with_a_token_free_now(
    make_client: Callable[..., BrevoClient], brevo: FakeBrevo, clock: FakeClock
) -> None:
    tight = one_per_second(clock)
    client = make_client(limiter=tight, max_wait=5)
    with client.if_free_now():
        client.upsert_contact(EMAIL, {})  # the token is free: it goes
    started = clock.now
    with pytest.raises(NotFreeNow), client.if_free_now():
        client.upsert_contact(EMAIL, {})
    assert len(brevo.requests) == 1 and clock.now == started  # not sent, not waited for
    # Nothing was reserved: the next ordinary call takes the next slot, one second on.
    client.upsert_contact(EMAIL, {})
    assert len(brevo.requests) == 2 and clock.now - started == pytest.approx(1.04, abs=0.01)
    # Only the first request of the block is held to "now": the list removal after the
    # upsert waits for its token as usual.
    clock.now += 2
    with client.if_free_now():
        client.upsert_contact(EMAIL, {}, unlink_list_ids=[4])
    assert [r.method for r in brevo.requests[2:]] == ["POST", "PUT"]


def test_a_held_token_is_spent_by_the_blocks_first_request_of_its_family_only(
    make_client: Callable[..., BrevoClient], brevo: FakeBrevo, clock: FakeClock
) -> None:
    tight = one_per_second(clock)
    client = make_client(limiter=tight, max_wait=5)
    started = clock.now
    with client.holding("contacts"):
        assert clock.now == started  # the first token was free
        client.upsert_contact(EMAIL, {})  # spends it: no second token, no wait
        assert clock.now == started
        client.upsert_contact(EMAIL, {})  # the block's second request takes its own
        assert clock.now - started == pytest.approx(1.04, abs=0.01)
    with client.holding("events"):
        pass  # held, never spent
    client.create_event("e", email=EMAIL)  # after the block: a token of its own
    assert clock.now - started == pytest.approx(2.08, abs=0.02)
    assert len(brevo.requests) == 3


def test_rate_limit_headers_feed_the_gauges(client: BrevoClient, brevo: FakeBrevo) -> None:
    brevo.answers.append(limited(204, remaining=7, reset="1", limit=10))
    client.create_event("e", email=EMAIL)
    assert sample("brevo_ratelimit_remaining", family="events") == 7
    assert sample("brevo_ratelimit_limit", family="events") == 10


def test_remaining_zero_pauses_the_family_until_the_window_can_have_reset(
    client: BrevoClient, brevo: FakeBrevo, limiter: TokenBucket
) -> None:
    brevo.answers += [limited(204, remaining=0, reset="1"), limited(204, remaining=0, reset="30")]
    client.create_event("e", email=EMAIL)
    # Reset is whole seconds rounded up: "1" may mean 1 ms, and our own spacing covers that.
    assert limiter.state()["events"]["paused_for"] == 0
    client.create_event("e", email=EMAIL)
    assert limiter.state()["events"]["paused_for"] == pytest.approx(29)


def test_a_429_pauses_the_family_and_is_transient_with_brevos_reset_as_delay(
    client: BrevoClient, brevo: FakeBrevo, limiter: TokenBucket
) -> None:
    brevo.answers.append(limited(429, remaining=0, reset="3"))
    before = sample("brevo_429_total", family="contacts")
    with pytest.raises(BrevoTransientError) as caught:
        client.upsert_contact(EMAIL, {})
    assert (caught.value.status, caught.value.delay) == (429, 3)
    assert caught.value.rate_limited  # a wait, not a failure: the worker does not count it
    assert limiter.state()["contacts"]["paused_for"] == pytest.approx(3)
    assert sample("brevo_429_total", family="contacts") == before + 1


def test_a_5xx_takes_the_reset_as_a_hint_only_when_the_quota_is_spent(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    """The reset of Brevo's hourly window is not when a 502 on a lookup is worth retrying."""
    brevo.answers.append(limited(502, remaining=57, reset="2400", limit=100))
    with pytest.raises(BrevoTransientError) as caught:
        client.get_account()
    assert (caught.value.status, caught.value.delay) == (502, None)
    assert not caught.value.rate_limited
    brevo.answers.append(limited(503, remaining=0, reset="4"))
    with pytest.raises(BrevoTransientError) as caught:
        client.upsert_contact(EMAIL, {})
    assert caught.value.delay == 4


def test_a_429_without_headers_still_pauses_a_second(
    client: BrevoClient, brevo: FakeBrevo, limiter: TokenBucket
) -> None:
    brevo.answers.append(error(429, "too_many_requests", "Too many requests"))
    with pytest.raises(BrevoTransientError) as caught:
        client.get_account()
    assert caught.value.delay == 1.0
    assert limiter.state()["other"]["paused_for"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("45", 45.0), ("0.25", 0.25), ("-3", 0.0), ("900000", 60.0), ("5000", 5.0), ("soon", None)],
)
def test_reset_is_read_defensively(raw: str, seconds: float | None) -> None:
    headers = httpx.Headers({"x-sib-ratelimit-reset": raw, "x-sib-ratelimit-remaining": "-1"})
    parsed = RateLimitHeaders.parse(headers)
    assert parsed.reset == seconds
    assert parsed.remaining == 0


# -- classification ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [425, 500, 502, 503, 504])
def test_too_early_and_server_errors_are_transient_and_sent_once(
    client: BrevoClient, brevo: FakeBrevo, status: int
) -> None:
    brevo.answers.append(limited(status, remaining=5, reset="2"))
    with pytest.raises(BrevoTransientError) as caught:
        client.create_event("e", email=EMAIL)
    # Quota left: the window's reset is no hint for a server error (the worker backs off).
    assert (caught.value.status, caught.value.delay) == (status, None)
    assert len(brevo.requests) == 1  # never a blind retry of a POST


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_timeouts_and_connection_errors_are_transient_and_counted(
    client: BrevoClient, brevo: FakeBrevo, exc: Exception
) -> None:
    brevo.answers.append(exc)
    before = sample("brevo_requests_total", family="events", status="error")
    with pytest.raises(BrevoTransientError) as caught:
        client.create_event("e", email=EMAIL)
    assert caught.value.status is None
    assert len(brevo.requests) == 1
    assert sample("brevo_requests_total", family="events", status="error") == before + 1


def test_a_bad_request_is_permanent_with_brevos_code_and_message(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers.append(error(400, "invalid_parameter", "Invalid phone number"))
    with pytest.raises(BrevoPermanentError) as caught:
        client.upsert_contact(EMAIL, {"SMS": "12"})
    assert caught.value.status == 400
    assert caught.value.brevo_code == "invalid_parameter"
    assert "invalid_parameter: Invalid phone number" in str(caught.value)
    assert len(brevo.requests) == 1


def test_a_401_says_bad_key_or_ip_not_allow_listed_and_how_to_fix_it(
    client: BrevoClient, brevo: FakeBrevo
) -> None:
    brevo.answers.append(error(401, "unauthorized", "Key not found"))
    with pytest.raises(BrevoPermanentError) as caught:
        client.get_account()
    message = str(caught.value)
    assert caught.value.status == 401
    assert "API key" in message and "allow-listed" in message and "Fix:" in message
    assert API_KEY not in message


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [(404, "document_not_found", "List ID not found"), (403, "permission_denied", "denied")],
)
def test_missing_lists_and_forbidden_calls_are_permanent(
    client: BrevoClient, brevo: FakeBrevo, status: int, code: str, words: str
) -> None:
    brevo.answers.append(error(status, code, words))
    with pytest.raises(BrevoPermanentError) as caught:
        client.add_to_list(99, [EMAIL])
    assert (caught.value.status, caught.value.brevo_code) == (status, code)
    assert words in str(caught.value)


# -- dry run and secrets -------------------------------------------------------------------------
def test_a_dry_run_sends_nothing_and_logs_the_call_with_the_email_masked(
    make_client: Callable[..., BrevoClient], brevo: FakeBrevo
) -> None:
    with capture_logs() as logs:
        client = make_client(api_key=None, logger=structlog.get_logger())
        result = client.upsert_contact(EMAIL, {"FIRSTNAME": "Jane"}, list_ids=[3])
        client.update_contact(EMAIL, unlink_list_ids=[7])
        client.create_event("calendly_invitee_created", email=EMAIL)

    assert brevo.requests == []
    assert result == UpsertResult(created=False, contact_id=None)
    assert [(e["event"], e["log_level"], e["method"]) for e in logs] == [
        ("brevo.dry_run", "info", "POST"),
        ("brevo.dry_run", "info", "PUT"),
        ("brevo.dry_run", "info", "POST"),
    ]
    assert logs[0]["body"] == {
        "email": "j***@example.com",
        "attributes": {"FIRSTNAME": "***"},
        "updateEnabled": True,
        "listIds": [3],
    }
    assert logs[1]["path"] == "/contacts/j***@example.com"
    assert logs[2]["body"]["identifiers"] == {"email_id": "j***@example.com"}
    assert EMAIL not in repr(logs)


def test_a_dry_run_in_debug_mode_logs_the_real_email(
    make_client: Callable[..., BrevoClient], brevo: FakeBrevo
) -> None:
    with capture_logs() as logs:
        client = make_client(api_key=None, logger=structlog.get_logger(), debug=True)
        client.create_event("e", email=EMAIL)
    assert logs[0]["body"]["identifiers"] == {"email_id": EMAIL}


def test_the_api_key_never_shows_in_repr_logs_or_errors(
    make_client: Callable[..., BrevoClient],
    brevo: FakeBrevo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    brevo.answers += [
        httpx.Response(400, json=SMS_TAKEN),
        httpx.Response(204),
        limited(429, remaining=0, reset="1"),
        httpx.ConnectError("refused"),
    ]
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        client = make_client(logger=structlog.get_logger())
        client.upsert_contact(EMAIL, {"SMS": "+31612345678"})
        messages = []
        for call in (client.get_account, client.get_account):
            with pytest.raises(BrevoTransientError) as caught:
                call()
            messages.append(repr(caught.value) + str(caught.value))

    assert "**********" in repr(client)
    assert API_KEY not in repr(client)
    assert API_KEY not in repr(logs)
    assert API_KEY not in caplog.text
    assert all(API_KEY not in m for m in messages)


def test_make_http_client_points_at_brevo_with_the_configured_timeout() -> None:
    settings = BrevoSettings(api_key="xkeysib-abc", timeout_seconds=7)  # type: ignore[arg-type]
    with make_http_client(settings) as http:
        assert str(http.base_url) == f"{BASE}/"
        assert http.timeout.read == 7
        assert "api-key" not in http.headers
    client = BrevoClient.from_settings(settings)
    assert "xkeysib-abc" not in repr(client)
    assert not client.dry_run


def test_the_whole_settings_object_works_too_for_the_composition_root(
    settings: Settings,
) -> None:
    with make_http_client(settings) as http:
        assert str(http.base_url) == f"{BASE}/"
    assert BrevoClient.from_settings(settings).dry_run  # no BREVO_API_KEY in the test settings


def test_masked_emails_keep_the_first_letter_and_the_domain_as_in_every_log_line() -> None:
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email("x@localhost") == "x***@localhost"
    assert redact({"email": "x@localhost"}) == {"email": "x***@localhost"}
