"""Issue 13.1: nobody can start the Calendly OAuth flow, or swap the connected account, without
the operator's key (the admin token or a one-time link from ``oauth connect-url``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from prometheus_client import REGISTRY

from calendly_brevo.calendly.connect import consume_link, issue_link
from calendly_brevo.db.engine import make_sessionmaker
from cli.main import cli
from tests.calendly.test_oauth import (
    ADMIN,
    authorize,
    engine_for,
    oauth_app,
    oauth_settings,
    store_for,
)
from tests.fakes.calendly import FakeCalendlyServer

OUTSIDER_ORG = "https://api.calendly.com/organizations/OUTSIDER"
OUTSIDER_USER = "https://api.calendly.com/users/OUTSIDER"


def connects(result: str) -> float:
    value = REGISTRY.get_sample_value("calendly_brevo_oauth_connects_total", {"result": result})
    return value or 0.0


def become_outsider(cal: FakeCalendlyServer) -> None:
    """From now on the fake Calendly authorizes someone else's account."""
    cal.state.org = OUTSIDER_ORG
    cal.state.user = {**cal.state.user, "uri": OUTSIDER_USER}


async def test_starting_a_connection_without_the_admin_token_or_a_link_is_refused(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    web_client = await oauth_app(aiohttp_client, settings, store_for(settings), http)
    before = connects("refused_auth")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        start = await web_client.get(
            "/oauth/calendly/start", allow_redirects=False, headers=headers
        )
        assert start.status == 401
        assert "oauth connect-url" in await start.text()
        assert "Location" not in start.headers and "calendly_oauth" not in start.cookies
    forged = await web_client.get("/oauth/calendly/callback?link=guessed", allow_redirects=False)
    assert forged.status == 403 and "connect-url" in await forged.text()
    assert connects("refused_auth") == before + 3


async def test_a_connect_link_works_once_and_connects_calendly(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    web_client = await oauth_app(aiohttp_client, settings, store, http)
    link = issue_link(store.sessions, "http://127.0.0.1/oauth/calendly/callback")
    path = link.removeprefix("http://127.0.0.1")
    assert path.startswith("/oauth/calendly/callback?link=")
    before = connects("connected")

    callback = await web_client.get(f"/oauth/calendly/callback?{await authorize(web_client, path)}")
    assert callback.status == 200, await callback.text()
    stored = store.load()
    assert stored is not None and stored.owner_uri == cal.state.user["uri"]
    assert connects("connected") == before + 1

    again = await web_client.get(path, allow_redirects=False)
    assert again.status == 403  # single use


def test_an_expired_connect_link_is_refused(tmp_path: Path, cal: FakeCalendlyServer) -> None:
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    link = issue_link(store.sessions, "http://x", ttl=-1)
    assert consume_link(store.sessions, link.split("link=")[1]) is None


async def test_a_token_for_another_calendly_account_is_refused_and_the_connection_kept(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    web_client = await oauth_app(aiohttp_client, settings, store, http)
    first = await web_client.get(f"/oauth/calendly/callback?{await authorize(web_client)}")
    assert first.status == 200
    connected = store.load()
    assert connected is not None

    become_outsider(cal)
    before = connects("refused_account")
    refused = await web_client.get(f"/oauth/calendly/callback?{await authorize(web_client)}")
    page = await refused.text()
    assert refused.status == 409 and "--replace" in page
    assert store.load() == connected  # still the operator's account
    assert connects("refused_account") == before + 1


async def test_a_replace_link_lets_the_operator_switch_calendly_accounts(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    web_client = await oauth_app(aiohttp_client, settings, store, http)
    await web_client.get(f"/oauth/calendly/callback?{await authorize(web_client)}")
    become_outsider(cal)
    path = issue_link(store.sessions, "/oauth/calendly/callback", replace=True)
    before = connects("replaced")
    switched = await web_client.get(f"/oauth/calendly/callback?{await authorize(web_client, path)}")
    assert switched.status == 200, await switched.text()
    stored = store.load()
    assert stored is not None and stored.organization_uri == OUTSIDER_ORG
    assert connects("replaced") == before + 1

    admin_replace = await web_client.get(
        "/oauth/calendly/start?replace=1", allow_redirects=False, headers=ADMIN
    )
    assert admin_replace.status == 302


def test_oauth_connect_url_prints_a_one_time_link_that_the_receiver_accepts(
    tmp_path: Path, cal: FakeCalendlyServer
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store_for(settings)  # migrated
    env = {
        "CALENDLY_CLIENT_ID": "client-123",
        "CALENDLY_CLIENT_SECRET": "secret-456",
        "CALENDLY_REDIRECT_URI": "https://connector.example/oauth/calendly/callback",
        "DATABASE_URL": settings.database_url,
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": "k" * 40,
        "REDIS_URL": "",
        "CONNECTOR_CONFIG": "",
    }
    result = CliRunner().invoke(cli, ["oauth", "connect-url", "--replace"], env=env)
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    # The link is on the public callback (the only OAuth path the internet reaches, issue 13
    # point 7): it works once, so the admin port is not needed for it.
    assert url.startswith("https://connector.example/oauth/calendly/callback?link=")
    sessions = make_sessionmaker(engine_for(settings))
    assert consume_link(sessions, url.split("link=")[1]) is True
    assert consume_link(sessions, url.split("link=")[1]) is None
