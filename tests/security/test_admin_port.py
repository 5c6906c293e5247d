"""Issue 13.7: the admin API, the OAuth start and /metrics are served on a second listener
(``server.admin_port``, ``ADMIN_PORT``); the public port has only the webhook, the OAuth
callback, /healthz and /readyz. The receiver as deployed (``receiver.main.build_apps`` and
``listen``, which ``calendly-brevo run`` uses too) is started on two free ports here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from calendly_brevo.config import load_settings
from calendly_brevo.db.engine import make_engine
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.errors import ConfigError
from receiver.main import Listening, build_apps, listen
from tests.conftest import make_settings

ADMIN_TOKEN = "admin-token-of-the-admin-port-test-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Listening]:
    settings = make_settings(
        tmp_path,
        CONNECTOR_ADMIN_TOKEN=ADMIN_TOKEN,
        CALENDLY_CLIENT_ID="client-id",
        CALENDLY_CLIENT_SECRET="client-secret",
        CALENDLY_REDIRECT_URI="https://connector.example/oauth/calendly/callback",
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    listening = await listen(build_apps(settings), settings, host="127.0.0.1", port=0, admin_port=0)
    try:
        yield listening
    finally:
        await listening.close()


async def test_admin_metrics_and_the_oauth_start_answer_404_on_the_public_port(
    receiver: Listening,
) -> None:
    public = f"http://127.0.0.1:{receiver.port}"
    async with httpx.AsyncClient(base_url=public, timeout=10) as client:
        for path in ("/metrics", "/admin/status", "/oauth/calendly/start"):
            assert (await client.get(path, headers=AUTH)).status_code == 404, path
        posted = await client.post("/admin/scheduling-links", json={}, headers=AUTH)
        assert posted.status_code == 404
        # What the public port is for still answers there.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/webhooks/calendly", content=b"{}")).status_code == 401
        callback = await client.get("/oauth/calendly/callback", params={"state": "x", "code": "y"})
        assert callback.status_code == 400 and "state" in callback.text.lower()
        guessed = await client.get("/oauth/calendly/callback", params={"link": "guessed"})
        assert guessed.status_code == 403


async def test_admin_metrics_and_the_oauth_start_work_on_the_admin_port_with_the_token(
    receiver: Listening,
) -> None:
    admin = f"http://127.0.0.1:{receiver.admin_port}"
    assert receiver.admin_port != receiver.port
    async with httpx.AsyncClient(base_url=admin, timeout=10) as client:
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "calendly_brevo_build_info" in metrics.text
        assert (await client.get("/admin/status")).status_code == 401
        status = await client.get("/admin/status", headers=AUTH)
        assert status.status_code == 200 and status.json()["mode"] == "embedded"
        assert (await client.get("/oauth/calendly/start")).status_code == 401
        start = await client.get("/oauth/calendly/start", headers=AUTH)
        assert start.status_code == 302  # to a one-time link on the public callback
        callback = "https://connector.example/oauth/calendly/callback"
        assert start.headers["Location"].startswith(f"{callback}?link=")
        # The internet-facing routes are not on the admin port.
        assert (await client.post("/webhooks/calendly", content=b"{}")).status_code == 404
        assert (await client.get("/oauth/calendly/callback")).status_code == 404


def test_the_admin_port_comes_from_admin_port_and_must_differ_from_the_public_one(
    tmp_path: Path,
) -> None:
    assert make_settings(tmp_path).server.admin_port == 8001
    assert make_settings(tmp_path, ADMIN_PORT="9001").server.admin_port == 9001
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"PORT": "9000", "ADMIN_PORT": "9000"})
    assert "admin_port" in str(info.value) and "own" in str(info.value)
