from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.calendly.subscription_store import active_signing_keys
from calendly_brevo.calendly.subscriptions import WEBHOOK_EVENTS, SubscriptionManager
from calendly_brevo.db.models import SigningKey
from calendly_brevo.encryption_key import load_box
from calendly_brevo.metrics import WEBHOOK_SUBSCRIPTION_ACTIVE
from cli.commands.webhooks import webhooks
from tests.fakes.calendly import FakeCalendlyServer

URL = "https://connector.example.com/webhooks/calendly"


def manager(services: Services, client: CalendlyClient) -> SubscriptionManager:
    return SubscriptionManager(client, services.sessions, load_box(services.settings))


def invoke(services: Services, *args: str) -> Any:
    return CliRunner().invoke(webhooks, list(args), obj=services, catch_exceptions=False)


def test_installing_twice_creates_one_subscription(
    cal: FakeCalendlyServer, services: Services
) -> None:
    services.interactive = True  # type: ignore[attr-defined]
    first = invoke(services, "install", "--url", URL, "--show-key")
    assert first.exit_code == 0, first.output
    assert "created" in first.output and "CALENDLY_WEBHOOK_SIGNING_KEY" in first.output
    second = invoke(services, "install", "--url", URL)
    assert second.exit_code == 0, second.output
    assert "already installed" in second.output
    assert "Signing key" not in second.output

    (sub,) = cal.state.subscriptions.values()
    assert sub["callback_url"] == URL and sub["scope"] == "organization"
    assert sorted(sub["events"]) == sorted(WEBHOOK_EVENTS)
    assert sub["organization"] == cal.state.org
    key = cal.state.signing_keys[sub["uri"]]
    assert key and key in first.output  # printed once, the one Calendly signs with
    assert active_signing_keys(services.sessions, load_box(services.settings)) == [key]


def test_the_signing_key_is_stored_encrypted(cal: FakeCalendlyServer, services: Services) -> None:
    invoke(services, "install", "--url", URL)
    (key,) = [k for k in cal.state.signing_keys.values() if k]
    with services.sessions() as session:
        (row,) = session.query(SigningKey).all()
    assert key.encode() not in row.key
    assert row.subscription_uri in cal.state.subscriptions


def test_user_scope_on_request(cal: FakeCalendlyServer, services: Services) -> None:
    result = invoke(services, "install", "--url", URL, "--scope", "user")
    assert result.exit_code == 0, result.output
    (sub,) = cal.state.subscriptions.values()
    assert sub["scope"] == "user" and sub["user"] == cal.state.user["uri"]


class RacingClient(CalendlyClient):
    """Lists nothing the first time, as if another process created the hook meanwhile."""

    listed = 0

    def list_webhook_subscriptions(self, **kwargs: Any) -> Any:
        self.listed += 1
        return iter(()) if self.listed <= 2 else super().list_webhook_subscriptions(**kwargs)


def test_a_409_adopts_the_existing_subscription(
    cal: FakeCalendlyServer, services: Services, client: CalendlyClient
) -> None:
    existing = client.create_webhook_subscription(
        URL, list(WEBHOOK_EVENTS), organization=cal.state.org, signing_key="theirs"
    )
    racing = RacingClient(client.http, client.tokens, base_url=cal.base_url)
    result = manager(services, racing).install(URL)
    assert not result.created and result.signing_key is None
    assert result.subscription["uri"] == existing["uri"]
    assert len(cal.state.subscriptions) == 1


def test_check_reports_a_disabled_subscription_and_exits_non_zero(
    cal: FakeCalendlyServer, services: Services
) -> None:
    invoke(services, "install", "--url", URL)
    (uri,) = cal.state.subscriptions
    cal.state.disable_subscription(uri)
    result = invoke(services, "check")
    assert result.exit_code == 1
    assert "disabled" in result.output and "--repair" in result.output
    assert WEBHOOK_SUBSCRIPTION_ACTIVE.labels("organization")._value.get() == 0
    assert cal.state.subscriptions[uri]["state"] == "disabled"  # nothing changed


def test_check_repair_recreates_a_disabled_subscription_with_the_same_key(
    cal: FakeCalendlyServer, services: Services
) -> None:
    invoke(services, "install", "--url", URL)
    (old_uri,) = cal.state.subscriptions
    old_key = cal.state.signing_keys[old_uri]
    cal.state.disable_subscription(old_uri)

    result = invoke(services, "check", "--repair")
    assert result.exit_code == 0, result.output
    (new_uri,) = cal.state.subscriptions
    assert new_uri != old_uri and cal.state.subscriptions[new_uri]["state"] == "active"
    assert cal.state.signing_keys[new_uri] == old_key  # receivers keep working
    assert WEBHOOK_SUBSCRIPTION_ACTIVE.labels("organization")._value.get() == 1
    assert active_signing_keys(services.sessions, load_box(services.settings)) == [old_key]
    assert invoke(services, "check").exit_code == 0


def test_check_reports_a_missing_subscription_and_repair_creates_it(
    cal: FakeCalendlyServer, services: Services
) -> None:
    result = invoke(services, "check", "--url", URL)
    assert result.exit_code == 1 and "missing" in result.output
    repaired = invoke(services, "check", "--url", URL, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "CALENDLY_WEBHOOK_SIGNING_KEY" in repaired.output  # a new key had to be made
    assert [s["callback_url"] for s in cal.state.subscriptions.values()] == [URL]


def test_list_shows_a_table_and_remove_deletes_and_retires_the_key(
    cal: FakeCalendlyServer, services: Services
) -> None:
    invoke(services, "install", "--url", URL)
    listed = invoke(services, "list")
    assert URL in listed.output and "active" in listed.output
    removed = invoke(services, "remove", "--url", URL)
    assert removed.exit_code == 0 and "removed" in removed.output
    assert cal.state.subscriptions == {}
    assert active_signing_keys(services.sessions, load_box(services.settings)) == []
    assert invoke(services, "remove", "--url", URL).exit_code == 1


def test_install_subscribes_the_events_asked_for_routing_forms_included(
    cal: FakeCalendlyServer, services: Services
) -> None:
    events = "invitee.created,routing_form_submission.created"
    result = invoke(services, "install", "--url", URL, "--events", events)
    assert result.exit_code == 0, result.output
    (sub,) = cal.state.subscriptions.values()
    assert sub["events"] == ["invitee.created", "routing_form_submission.created"]
    assert "events: invitee.created, routing_form_submission.created" in result.output


def test_routing_forms_are_subscribed_by_default_when_the_config_upserts_submitters() -> None:
    from calendly_brevo.calendly.subscriptions import subscribed_events

    assert subscribed_events(False) == WEBHOOK_EVENTS
    assert subscribed_events(True) == (*WEBHOOK_EVENTS, "routing_form_submission.created")


def test_an_unknown_event_or_a_user_scoped_routing_form_is_refused_before_calling_calendly(
    cal: FakeCalendlyServer, services: Services
) -> None:
    import pytest

    from calendly_brevo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown event invitee\.bogus") as err:
        invoke(services, "install", "--url", URL, "--events", "invitee.bogus")
    assert err.value.allowed and "routing_form_submission.created" in err.value.allowed
    with pytest.raises(ConfigError, match="only at organization scope"):
        invoke(
            services,
            "install",
            "--url",
            URL,
            "--scope",
            "user",
            "--events",
            "routing_form_submission.created",
        )
    assert not cal.state.subscriptions


def test_the_fake_calendly_refuses_what_calendly_refuses(
    cal: FakeCalendlyServer, services: Services
) -> None:
    import httpx
    import pytest

    from calendly_brevo.calendly.client import StaticToken
    from calendly_brevo.errors import ConnectorError

    with httpx.Client() as h:
        client = CalendlyClient(h, StaticToken(cal.pat), base_url=cal.base_url)
        user = cal.state.user["uri"]
        for events, scope in (
            (["invitee.bogus"], "organization"),
            (["routing_form_submission.created"], "user"),
        ):
            with pytest.raises(ConnectorError):
                client.create_webhook_subscription(
                    URL,
                    events,
                    organization=cal.state.org,
                    scope=scope,
                    user=user if scope == "user" else None,
                )
        client.create_webhook_subscription(
            URL,
            ["routing_form_submission.created"],
            organization=cal.state.org,
            scope="organization",
        )
    assert len(cal.state.subscriptions) == 1
