"""A generated signing key never reaches a non-interactive log (a CronJob's, a pipe's)."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.subscription_store import active_signing_keys
from calendly_brevo.db.models import SigningKey
from calendly_brevo.encryption_key import load_box
from cli.commands.webhooks import webhooks
from tests.fakes.calendly import FakeCalendlyServer

URL = "https://connector.example.com/webhooks/calendly"


def invoke(services: Services, *args: str) -> Any:
    return CliRunner().invoke(webhooks, list(args), obj=services, catch_exceptions=False)


def test_check_repair_in_a_cron_job_stores_the_new_key_and_never_prints_it(
    cal: FakeCalendlyServer, services: Services
) -> None:
    result = invoke(services, "check", "--url", URL, "--repair", "--show-key")
    assert result.exit_code == 0, result.output
    (uri,) = cal.state.subscriptions
    key = cal.state.signing_keys[uri]
    assert key and key not in result.output
    assert "table signing_keys" in result.output and uri in result.output
    assert "--show-key needs a terminal" in result.output
    assert active_signing_keys(services.sessions, load_box(services.settings)) == [key]


def test_install_without_a_terminal_does_not_print_the_key(
    cal: FakeCalendlyServer, services: Services
) -> None:
    result = invoke(services, "install", "--url", URL)
    (key,) = cal.state.signing_keys.values()
    assert key not in result.output and "stored encrypted" in result.output


def test_a_terminal_sees_the_new_key_once_only_when_it_asks(
    cal: FakeCalendlyServer, services: Services
) -> None:
    services.interactive = True  # type: ignore[attr-defined]
    unasked = invoke(services, "check", "--url", URL, "--repair")
    (uri,) = cal.state.subscriptions
    assert cal.state.signing_keys[uri] not in unasked.output
    cal.state.disable_subscription(uri)
    cal.state.signing_keys.clear()
    with services.sessions() as session:  # force a fresh key on the next repair
        session.query(SigningKey).delete()
        session.commit()
    asked = invoke(services, "check", "--url", URL, "--repair", "--show-key")
    (new_uri,) = cal.state.subscriptions
    assert cal.state.signing_keys[new_uri] in asked.output
    again = invoke(services, "check", "--url", URL, "--show-key")
    assert cal.state.signing_keys[new_uri] not in again.output
