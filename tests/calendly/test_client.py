from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from calendly_brevo.calendly import make_client
from calendly_brevo.calendly.client import CalendlyClient, StaticToken, describe_error
from calendly_brevo.errors import (
    CalendlyAuthError,
    CalendlyConflict,
    CalendlyForbidden,
    CalendlyNotFound,
    CalendlyTransientError,
    ConfigError,
)
from calendly_brevo.metrics import CALENDLY_REQUESTS
from tests.calendly.conftest import calendly_settings
from tests.fakes.calendly import FakeCalendlyServer


def test_list_methods_follow_next_page_token_until_the_last_page(
    cal: FakeCalendlyServer, client: CalendlyClient
) -> None:
    cal.state.generate(250, group_every=0)
    events = list(client.list_scheduled_events(organization=cal.state.org))
    assert len(events) == 250
    assert len({e["uri"] for e in events}) == 250
    assert [e["start_time"] for e in events] == sorted(e["start_time"] for e in events)
    calls = [q for m, p, q in cal.state.requests if p == "/scheduled_events"]
    assert [q["count"] for q in calls] == ["100", "100", "100"]
    assert "page_token" not in calls[0] and calls[1]["page_token"] and calls[2]["page_token"]


def test_pages_expose_the_token_that_fetched_each_page(
    cal: FakeCalendlyServer, client: CalendlyClient
) -> None:
    cal.state.generate(5, group_every=0)
    pages = list(client.pages("scheduled_events", {"organization": cal.state.org}, count=2))
    assert [len(p.collection) for p in pages] == [2, 2, 1]
    assert pages[0].page_token is None
    assert pages[1].page_token == pages[0].next_page_token
    assert pages[2].next_page_token is None
    again = list(
        client.pages(
            "scheduled_events",
            {"organization": cal.state.org},
            count=2,
            page_token=pages[1].page_token,
        )
    )
    assert [p.collection for p in again] == [pages[1].collection, pages[2].collection]


def test_a_429_on_a_get_waits_for_the_reset_and_retries(
    cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    slept: list[float] = []
    client = CalendlyClient(http, StaticToken(cal.pat), base_url=cal.base_url, sleep=slept.append)
    cal.state.force_429, cal.state.force_429_reset = 2, 7
    before = CALENDLY_REQUESTS.labels("429")._value.get()
    assert client.me()["uri"] == cal.state.user["uri"]
    assert len(slept) == 2 and all(5 <= s <= 7 for s in slept)
    assert CALENDLY_REQUESTS.labels("429")._value.get() - before == 2


def test_429s_beyond_the_retry_budget_raise_a_transient_error_with_the_delay(
    cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    client = CalendlyClient(
        http, StaticToken(cal.pat), base_url=cal.base_url, sleep=lambda _s: None, max_retries=2
    )
    cal.state.force_429, cal.state.force_429_reset = 10, 30
    with pytest.raises(CalendlyTransientError, match="rate limited") as info:
        client.me()
    assert info.value.delay == 30
    assert cal.state.force_429 == 7  # one try and two retries


def test_a_post_is_not_retried_on_429(cal: FakeCalendlyServer, client: CalendlyClient) -> None:
    cal.state.force_429 = 1
    with pytest.raises(CalendlyTransientError):
        client.create_scheduling_link(cal.state.event_types[0]["uri"])
    assert cal.state.scheduling_links == []


def test_a_401_names_the_fix_new_pat_or_oauth(cal: FakeCalendlyServer, http: httpx.Client) -> None:
    client = CalendlyClient(http, StaticToken("revoked"), base_url=cal.base_url)
    with pytest.raises(CalendlyAuthError) as info:
        client.me()
    message = str(info.value)
    assert "The access token is invalid" in message
    assert "token expired or lacks scopes" in message
    assert "https://calendly.com/integrations/api_webhooks" in message
    assert "OAuth" in message
    assert "revoked" not in message


def test_a_403_for_a_missing_scope_names_the_scope_and_the_plan(
    cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    token = cal.state.add_pat(scopes={"users:read"})
    client = CalendlyClient(http, StaticToken(token), base_url=cal.base_url)
    assert client.me()
    with pytest.raises(CalendlyForbidden) as info:
        list(client.list_scheduled_events(organization=cal.state.org))
    assert "scheduled_events:read" in str(info.value)
    assert "Professional" in str(info.value)


def test_a_duplicate_webhook_url_is_a_conflict_and_a_missing_one_not_found(
    cal: FakeCalendlyServer, client: CalendlyClient
) -> None:
    args = {"organization": cal.state.org, "scope": "organization"}
    client.create_webhook_subscription(
        "https://x.test/webhooks/calendly", ["invitee.created"], **args
    )
    with pytest.raises(CalendlyConflict, match="already exists"):
        client.create_webhook_subscription(
            "https://x.test/webhooks/calendly", ["invitee.created"], **args
        )
    with pytest.raises(CalendlyNotFound):
        client.get_webhook_subscription("https://api.calendly.com/webhook_subscriptions/NOPE")


def test_no_show_endpoints_create_get_and_delete(
    cal: FakeCalendlyServer, client: CalendlyClient
) -> None:
    cal.state.generate(1)
    invitee = cal.state.all_invitees()[0]
    made = client.create_invitee_no_show(invitee["uri"])
    assert client.get_invitee_no_show(made["uri"])["invitee"] == invitee["uri"]
    client.delete_invitee_no_show(made["uri"])
    assert invitee["no_show"] is None


def test_error_messages_include_calendlys_details() -> None:
    body = {
        "title": "Invalid Argument",
        "message": "The supplied parameters are invalid.",
        "details": [{"parameter": "count", "message": "must be between 1 and 100"}],
    }
    text = describe_error(400, body)
    assert "Invalid Argument" in text and "count: must be between 1 and 100" in text


def test_a_personal_access_token_works_without_any_oauth_setup(
    tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = calendly_settings(tmp_path, cal)
    assert settings.calendly.oauth.client_id is None
    client = make_client(settings, http)  # no database, no encryption key needed
    assert client.me()["email"] == "host@example.com"


def test_no_credentials_at_all_is_a_config_error_with_both_fixes(
    tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = calendly_settings(tmp_path, cal, CALENDLY_ACCESS_TOKEN=None)
    with pytest.raises(ConfigError) as info:
        make_client(settings, http)
    assert "CALENDLY_ACCESS_TOKEN" in str(info.value) and "/oauth/calendly/start" in str(info.value)
