from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly import make_client
from calendly_brevo.calendly.tokens import OAuthTokenProvider, OAuthTokenStore
from calendly_brevo.config import Settings
from calendly_brevo.db.engine import make_engine, make_sessionmaker
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.encryption_key import load_box
from calendly_brevo.errors import CalendlyAuthError
from receiver.oauth import setup_oauth_callback, setup_oauth_start
from tests.calendly.conftest import calendly_settings
from tests.fakes.calendly import FakeCalendlyServer

CLIENT_ID, CLIENT_SECRET = "client-123", "secret-456"
REDIRECT = "http://127.0.0.1/oauth/calendly/callback"
ADMIN_TOKEN = "admin-token-for-the-oauth-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def oauth_settings(tmp_path: Path, cal: FakeCalendlyServer, **env: Any) -> Settings:
    cal.state.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    return calendly_settings(
        tmp_path,
        cal,
        CALENDLY_ACCESS_TOKEN=None,
        CALENDLY_CLIENT_ID=CLIENT_ID,
        CALENDLY_CLIENT_SECRET=CLIENT_SECRET,
        CALENDLY_REDIRECT_URI=REDIRECT,
        CALENDLY_AUTH_URL=cal.base_url,
        CONNECTOR_ADMIN_TOKEN=ADMIN_TOKEN,
        **env,
    )


ENGINES: list[Engine] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    while ENGINES:
        ENGINES.pop().dispose()


def engine_for(settings: Settings) -> Engine:
    engine = make_engine(settings.database_url)
    ENGINES.append(engine)
    return engine


def store_for(settings: Settings) -> OAuthTokenStore:
    engine = engine_for(settings)
    upgrade(engine)
    return OAuthTokenStore(make_sessionmaker(engine), load_box(settings))


async def oauth_app(
    aiohttp_client: Any, settings: Settings, store: OAuthTokenStore, http: httpx.Client
) -> TestClient[Any, Any]:
    """Both OAuth routes on one app; the receiver puts the start on the admin port and the
    callback on the public one: see the test of the admin listener handing over)."""
    app = web.Application()
    setup_oauth_start(app, settings, store)
    setup_oauth_callback(app, settings, store, http=http)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def authorize(
    web_client: TestClient[Any, Any],
    start_path: str = "",
    public: TestClient[Any, Any] | None = None,
) -> str:
    """Run start → one-time link on the callback → Calendly's authorize page; return the
    callback query Calendly sends back. Without ``start_path`` the start is authorized with the
    admin token on ``web_client``; the link is followed on ``public`` (default: the same app)."""
    public = public or web_client
    if not start_path:
        start = await web_client.get("/oauth/calendly/start", allow_redirects=False, headers=ADMIN)
        assert start.status == 302
        hop = urlsplit(start.headers["Location"])
        assert hop.path == "/oauth/calendly/callback" and hop.query.startswith("link=")
        start_path = f"{hop.path}?{hop.query}"
    begun = await public.get(start_path, allow_redirects=False)
    assert begun.status == 302, await begun.text()
    location = begun.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["redirect_uri"] == [REDIRECT] and query["state"][0]
    approved = await asyncio.to_thread(httpx.get, location, follow_redirects=False)
    assert approved.status_code == 302
    return urlsplit(approved.headers["location"]).query


async def test_oauth_end_to_end_stores_tokens_encrypted_and_a_refresh_rotates_them(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    web_client = await oauth_app(aiohttp_client, settings, store, http)

    callback = await web_client.get(f"/oauth/calendly/callback?{await authorize(web_client)}")
    page = await callback.text()
    assert callback.status == 200, page
    assert "Calendly connected" in page

    stored = store.load()
    assert stored is not None and stored.owner_uri == cal.state.user["uri"]
    assert stored.access_token in cal.state.grants and stored.refresh_token
    assert stored.access_token not in page and stored.refresh_token not in page
    assert stored.access_token not in repr(stored)
    grant = cal.state.token_requests[-1]
    assert grant["grant_type"] == "authorization_code" and grant["code_verifier"]

    with sqlite3.connect(tmp_path / "connector.db") as conn:
        raw = conn.execute("SELECT access_token, refresh_token FROM oauth_tokens").fetchone()
    dump = b"".join(raw)
    assert stored.access_token.encode() not in dump
    assert stored.refresh_token.encode() not in dump

    # The access token expires: the client gets a 401, refreshes once, retries.
    cal.state.expire_access_tokens()
    client = make_client(settings, http, store.sessions)
    assert client.me()["uri"] == cal.state.user["uri"]
    rotated = store.load()
    assert rotated is not None and rotated.version == stored.version + 1
    assert rotated.refresh_token != stored.refresh_token
    assert rotated.refresh_token in cal.state.refresh_tokens
    assert stored.refresh_token not in cal.state.refresh_tokens  # single use: the old one is dead


@pytest.mark.parametrize(
    "query",
    ["", "state=forged&code=abc", "code=abc"],
    ids=["nothing", "forged state", "no state"],
)
async def test_a_callback_with_a_bad_or_missing_state_is_refused_and_stores_nothing(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client, query: str
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    web_client = await oauth_app(aiohttp_client, settings, store, http)
    real = await authorize(web_client)  # the browser has a pending cookie
    code = parse_qs(real)["code"][0]
    resp = await web_client.get(f"/oauth/calendly/callback?{query.replace('abc', code)}")
    assert resp.status == 400
    assert "state" in (await resp.text()).lower()
    assert store.load() is None
    assert not [r for r in cal.state.token_requests if r["grant_type"] == "authorization_code"]


async def test_a_callback_without_the_start_cookie_is_refused(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    web_client = await oauth_app(aiohttp_client, settings, store, http)
    query = await authorize(web_client)
    web_client.session.cookie_jar.clear()
    resp = await web_client.get(f"/oauth/calendly/callback?{query}")
    assert resp.status == 400
    assert store.load() is None


async def test_the_start_on_the_admin_listener_hands_over_to_the_public_one(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    """The start is on the admin port, the callback on the public URL (issue 13 point 7): the
    start answers with a one-time link on the callback, which binds the flow to the browser
    (the cookie) on the host Calendly returns to; someone who learns the authorize URL and
    finishes it in another browser gets nothing."""
    settings = oauth_settings(tmp_path, cal)
    store = store_for(settings)
    admin, public = web.Application(), web.Application()
    setup_oauth_start(admin, settings, store)
    setup_oauth_callback(public, settings, store, http=http)
    admin_client = await aiohttp_client(admin)
    public_client = await aiohttp_client(public)
    assert (await public_client.get("/oauth/calendly/start", headers=ADMIN)).status == 404
    assert (await admin_client.get("/oauth/calendly/callback")).status == 404

    start = await admin_client.get("/oauth/calendly/start", allow_redirects=False, headers=ADMIN)
    assert start.headers["Location"].startswith(f"{REDIRECT}?link=")
    query = await authorize(admin_client, public=public_client)
    async with httpx.AsyncClient() as other_browser:  # no cookie: someone else's browser
        stolen = await other_browser.get(
            str(public_client.make_url(f"/oauth/calendly/callback?{query}"))
        )
    assert stolen.status_code == 400 and store.load() is None
    callback = await public_client.get(f"/oauth/calendly/callback?{query}")
    assert callback.status == 200, await callback.text()
    stored = store.load()
    assert stored is not None and stored.owner_uri == cal.state.user["uri"]


async def test_oauth_routes_answer_404_with_the_fix_when_no_client_id_is_configured(
    aiohttp_client: Any, tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = calendly_settings(tmp_path, cal)
    web_client = await oauth_app(aiohttp_client, settings, store_for(settings), http)
    for path in ("/oauth/calendly/start", "/oauth/calendly/callback?state=x&code=y"):
        resp = await web_client.get(path, allow_redirects=False)
        assert resp.status == 404
        assert "CALENDLY_CLIENT_ID" in await resp.text()


def connect(settings: Settings, cal: FakeCalendlyServer) -> tuple[OAuthTokenStore, dict[str, Any]]:
    store = store_for(settings)
    response = cal.state.issue()
    store.save(response)
    return store, response


def second_process(settings: Settings, store: OAuthTokenStore) -> OAuthTokenStore:
    """Another process: its own engine and sessions on the same database."""
    sessions: sessionmaker[Session] = make_sessionmaker(engine_for(settings))
    return OAuthTokenStore(sessions, store.box)


def refresh_concurrently(
    settings: Settings, cal: FakeCalendlyServer, stores: list[OAuthTokenStore]
) -> list[str]:
    seen = stores[0].load()
    assert seen is not None
    barrier = threading.Barrier(len(stores))
    results: list[str] = []
    errors: list[BaseException] = []

    def run(store: OAuthTokenStore) -> None:
        with httpx.Client(timeout=10) as http:
            barrier.wait()
            try:
                results.append(
                    store.refresh(http, settings.calendly.oauth, seen.version).access_token
                )
            except BaseException as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors, errors
    return results


def test_concurrent_refreshes_do_not_lose_the_rotated_refresh_token(
    tmp_path: Path, cal: FakeCalendlyServer
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store, first = connect(settings, cal)
    stores = [store, second_process(settings, store), second_process(settings, store)]
    results = refresh_concurrently(settings, cal, stores)

    final = store.load()
    assert final is not None and final.version == 2
    assert set(results) == {final.access_token}  # everyone uses the one new token
    assert final.refresh_token in cal.state.refresh_tokens  # and the stored one still works
    assert first["refresh_token"] not in cal.state.refresh_tokens
    refreshes = [r for r in cal.state.token_requests if r["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1


@pytest.mark.integration
def test_concurrent_refreshes_on_postgres_do_not_lose_the_rotated_refresh_token(
    tmp_path: Path, cal: FakeCalendlyServer, postgres_url: str
) -> None:
    settings = oauth_settings(tmp_path, cal, DATABASE_URL=postgres_url)
    store, _first = connect(settings, cal)
    stores = [store, second_process(settings, store), second_process(settings, store)]
    results = refresh_concurrently(settings, cal, stores)
    final = store.load()
    assert final is not None and set(results) == {final.access_token}
    assert final.refresh_token in cal.state.refresh_tokens


def test_a_rejected_refresh_token_asks_to_reconnect(
    tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    store, first = connect(settings, cal)
    cal.state.refresh_tokens.clear()  # e.g. revoked in Calendly
    provider = OAuthTokenProvider(store, http, settings.calendly.oauth)
    with pytest.raises(CalendlyAuthError, match="re-run the OAuth flow"):
        provider.refresh_after_401(first["access_token"])


def test_the_provider_refreshes_before_expiry_without_waiting_for_a_401(
    tmp_path: Path, cal: FakeCalendlyServer, http: httpx.Client
) -> None:
    settings = oauth_settings(tmp_path, cal)
    cal.state.access_token_ttl = 60  # inside the 5 minute skew
    store, first = connect(settings, cal)
    provider = OAuthTokenProvider(store, http, settings.calendly.oauth)
    token = provider.token()
    assert token != first["access_token"]
    assert provider.token() != first["access_token"]
