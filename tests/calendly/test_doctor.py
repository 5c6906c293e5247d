from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.subscriptions import WEBHOOK_EVENTS
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.doctor import Check, DoctorContext, run_checks
from cli.commands.doctor import doctor
from tests.calendly.conftest import calendly_settings
from tests.fakes.calendly import FakeCalendlyServer

URL = "https://connector.example.com/webhooks/calendly"
CONFIG = """
connectors:
  calendly:
    event_mapping:
      demo: {list_id: 11, event_type_uri: "https://api.calendly.com/event_types/x"}
field_mapping:
  questions_and_answers:
    company: COMPANY
"""
ALL_ATTRIBUTES = [
    "FIRSTNAME",
    "LASTNAME",
    "CALENDLY_EVENT_TYPE",
    "MEETING_DATE",
    "BOOKING_STATUS",
    "COMPANY",
]


class FakeBrevoAccount:
    def __init__(self) -> None:
        self.account: tuple[int, dict[str, Any]] = (200, {"email": "owner@example.com"})
        self.lists = [{"id": 11, "name": "Demo"}]
        self.attributes = list(ALL_ATTRIBUTES)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["api-key"] == "xkeysib-test"
        path = request.url.path.removeprefix("/v3")
        if path == "/account":
            return httpx.Response(self.account[0], json=self.account[1])
        if path == "/contacts/lists":
            return httpx.Response(200, json={"lists": self.lists, "count": len(self.lists)})
        if path == "/contacts/attributes":
            attrs = [{"name": n, "category": "normal", "type": "text"} for n in self.attributes]
            return httpx.Response(200, json={"attributes": attrs})
        return httpx.Response(404, json={"code": "not_found", "message": path})


@pytest.fixture
def brevo() -> FakeBrevoAccount:
    return FakeBrevoAccount()


@pytest.fixture
def http(brevo: FakeBrevoAccount) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, mounts={"http://brevo.test": httpx.MockTransport(brevo)}) as c:
        yield c


@pytest.fixture
def doctor_services(
    tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> Iterator[Callable[..., Services]]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    made: list[Services] = []

    def make(migrate: bool = True, **env: Any) -> Services:
        base = {
            "CONNECTOR_CONFIG": str(config),
            "BREVO_API_KEY": "xkeysib-test",
            "BREVO_API_URL": "http://brevo.test/v3",
        }
        services = Services(calendly_settings(tmp_path, cal, **{**base, **env}))
        services.http_client = http  # type: ignore[attr-defined]
        if migrate:
            upgrade(services.engine)
        made.append(services)
        return services

    yield make
    for s in made:
        s.close()


def checks(services: Services, http: httpx.Client) -> dict[str, Check]:
    ctx = DoctorContext(
        services.settings,
        http,
        engine_factory=lambda: services.engine,
        sessions_factory=lambda: services.sessions,
    )
    return {c.name: c for c in run_checks(ctx)}


def install(cal: FakeCalendlyServer, scope: str = "organization") -> str:
    from calendly_brevo.calendly.client import CalendlyClient, StaticToken

    with httpx.Client() as h:
        client = CalendlyClient(h, StaticToken(cal.pat), base_url=cal.base_url)
        sub = client.create_webhook_subscription(
            URL,
            list(WEBHOOK_EVENTS),
            organization=cal.state.org,
            scope=scope,
            user=cal.state.user["uri"] if scope == "user" else None,
        )
    return str(sub["uri"])


def test_doctor_reports_each_problem_with_its_fix(
    cal: FakeCalendlyServer,
    doctor_services: Callable[..., Services],
    brevo: FakeBrevoAccount,
    http: httpx.Client,
) -> None:
    services = doctor_services(
        migrate=False, CALENDLY_ACCESS_TOKEN="revoked-token", CALENDLY_WEBHOOK_SIGNING_KEY=""
    )
    brevo.account = (401, {"code": "unauthorized", "message": "Key not found or not verified"})
    found = checks(services, http)

    token = found["Calendly token"]
    assert token.status == "FAIL" and "401" in token.detail
    assert token.fix and "https://calendly.com/integrations/api_webhooks" in token.fix
    assert found["webhook subscription"].status == "WARN"
    key = found["webhook signing key"]
    assert key.status == "FAIL" and key.fix and "CALENDLY_WEBHOOK_SIGNING_KEY" in key.fix
    brevo_key = found["Brevo API key"]
    assert brevo_key.status == "FAIL" and brevo_key.fix and "authorised-ips" in brevo_key.fix
    assert found["Redis"].status == "OK"
    db = found["database"]
    assert db.status == "FAIL" and db.fix and "calendly-brevo migrate" in db.fix

    result = CliRunner().invoke(doctor, [], obj=services)
    assert result.exit_code == 1
    assert "FAIL Calendly token" in result.output and "fix:" in result.output
    assert "revoked-token" not in result.output


def test_doctor_names_missing_lists_and_attributes_and_points_to_brevo_setup(
    cal: FakeCalendlyServer,
    doctor_services: Callable[..., Services],
    brevo: FakeBrevoAccount,
    http: httpx.Client,
) -> None:
    services = doctor_services()
    brevo.lists = []
    brevo.attributes = ["FIRSTNAME", "LASTNAME"]
    found = checks(services, http)
    lists = found["Brevo lists"]
    assert lists.status == "FAIL" and "11" in lists.detail
    attrs = found["Brevo attributes"]
    assert attrs.status == "FAIL"
    assert "COMPANY" in attrs.detail and "MEETING_DATE" in attrs.detail
    assert "FIRSTNAME" not in attrs.detail
    assert attrs.fix and "calendly-brevo brevo setup" in attrs.fix


@pytest.mark.parametrize(
    ("setup", "status", "words"),
    [
        ("none", "FAIL", "webhooks install"),
        ("disabled", "FAIL", "--repair"),
        ("user", "WARN", "organization scope"),
        ("active", "OK", ""),
    ],
)
def test_doctor_checks_the_subscription_scope_and_state(
    cal: FakeCalendlyServer,
    doctor_services: Callable[..., Services],
    http: httpx.Client,
    setup: str,
    status: str,
    words: str,
) -> None:
    services = doctor_services(PUBLIC_URL="https://connector.example.com")
    if setup != "none":
        uri = install(cal, "user" if setup == "user" else "organization")
        if setup == "disabled":
            cal.state.disable_subscription(uri)
    check = checks(services, http)["webhook subscription"]
    assert check.status == status, check
    assert words in (check.fix or "")


def test_doctor_passes_when_everything_is_in_place(
    cal: FakeCalendlyServer, doctor_services: Callable[..., Services]
) -> None:
    services = doctor_services(PUBLIC_URL="https://connector.example.com")
    install(cal)
    result = CliRunner().invoke(doctor, [], obj=services, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and result.output.count("OK") >= 8


@pytest.mark.integration
def test_doctor_reaches_real_redis_and_postgres(
    cal: FakeCalendlyServer,
    doctor_services: Callable[..., Services],
    redis_url: str,
    postgres_url: str,
) -> None:
    services = doctor_services(REDIS_URL=redis_url, DATABASE_URL=postgres_url)
    found = checks(services, services.http_client)  # type: ignore[attr-defined]
    assert found["database"].status == "OK"
    ctx = DoctorContext(
        services.settings,
        services.http_client,  # type: ignore[attr-defined]
        engine_factory=lambda: services.engine,
        sessions_factory=lambda: services.sessions,
        redis_ping=lambda: bool(services.redis.ping()),
    )
    from calendly_brevo.doctor import check_redis

    assert check_redis(ctx).status == "OK"


def test_doctor_fails_a_production_config_without_a_brevo_key_and_names_the_fix(
    doctor_services: Callable[..., Services], http: httpx.Client
) -> None:
    services = doctor_services(BREVO_API_KEY="", REDIS_URL="redis://127.0.0.1:6387/0")
    key = checks(services, http)["Brevo API key"]
    assert key.status == "FAIL" and "REDIS_URL is set" in key.detail
    assert key.fix and "BREVO_DRY_RUN=true" in key.fix


def test_doctor_warns_about_an_explicit_dry_run_even_with_a_key(
    doctor_services: Callable[..., Services], http: httpx.Client
) -> None:
    services = doctor_services(BREVO_DRY_RUN="true")
    key = checks(services, http)["Brevo API key"]
    assert key.status == "WARN" and "DRY RUN (brevo.dry_run is true)" in key.detail


def test_doctor_fails_a_token_missing_a_scope_and_names_it_with_the_fix(
    cal: FakeCalendlyServer, doctor_services: Callable[..., Services], http: httpx.Client
) -> None:
    token = cal.state.add_pat(scopes={"users:read", "webhooks:write", "event_types:read"})
    found = checks(doctor_services(CALENDLY_ACCESS_TOKEN=token), http)
    scopes = found["Calendly scopes"]
    assert scopes.status == "FAIL"
    assert "scheduled_events:read" in scopes.detail and "event_types:read" not in scopes.detail
    assert "webhooks:read" not in scopes.detail, "a :write scope implies :read"
    assert scopes.fix and "scheduled_events:read" in scopes.fix
    assert "https://calendly.com/integrations/api_webhooks" in scopes.fix


def test_doctor_passes_the_scopes_of_a_full_token_and_says_what_it_cannot_probe(
    doctor_services: Callable[..., Services], http: httpx.Client
) -> None:
    scopes = checks(doctor_services(), http)["Calendly scopes"]
    assert scopes.status == "OK"
    assert "not probed: webhooks:write, scheduling_links:write" in scopes.detail
