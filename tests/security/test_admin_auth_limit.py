"""Issue 13.7 (part): failed admin authentication is rate-limited per client address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from receiver.admin import setup_admin
from receiver.auth_limit import AUTH_LIMITER, AuthLimiter
from tests.conftest import make_settings

TOKEN = "the-admin-token-of-this-test-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_address_that_keeps_guessing_the_admin_token_gets_429_with_a_reason(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, CONNECTOR_ADMIN_TOKEN=TOKEN)
    clock = Clock()
    app = web.Application()
    app[AUTH_LIMITER] = AuthLimiter(max_failures=3, window_seconds=60, clock=clock)
    setup_admin(app, settings, object())
    client = await aiohttp_client(app)
    right = {"Authorization": f"Bearer {TOKEN}"}

    assert (await client.get("/admin/status", headers=right)).status != 401
    for _ in range(3):
        wrong = await client.get("/admin/status", headers={"Authorization": "Bearer guess"})
        assert wrong.status == 401
    blocked = await client.get("/admin/status", headers=right)
    assert blocked.status == 429
    body = await blocked.json()
    assert body["reason"] == "auth_rate_limited" and "try again" in body["error"]
    assert int(blocked.headers["Retry-After"]) > 0

    clock.now += 61  # the failures leave the window
    assert (await client.get("/admin/status", headers=right)).status != 429


def test_failures_of_one_address_do_not_lock_out_another() -> None:
    clock = Clock()
    limiter = AuthLimiter(max_failures=2, window_seconds=60, clock=clock)
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is not None
    assert limiter.retry_after("10.0.0.2") is None


async def test_guesses_at_the_admin_api_and_at_the_console_share_one_budget(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from calendly_brevo.bootstrap import Services
    from receiver.console import create_console_app

    settings = make_settings(tmp_path, CONNECTOR_ADMIN_TOKEN=TOKEN)
    app = web.Application()
    app[AUTH_LIMITER] = AuthLimiter(max_failures=3, window_seconds=60, clock=Clock())
    setup_admin(app, settings, object())
    app.add_subapp("/console/", create_console_app(settings, Services(settings)))
    client = await aiohttp_client(app)

    for _ in range(3):  # all three guesses at the admin API
        wrong = await client.get("/admin/status", headers={"Authorization": "Bearer guess"})
        assert wrong.status == 401
    login = await client.post(
        "/console/login", data={"token": TOKEN, "next": "/console/"}, allow_redirects=False
    )
    assert login.status == 429, "the console gives no fresh budget of guesses"
    bearer = await client.get("/console/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status == 429
