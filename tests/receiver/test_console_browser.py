"""The operator console in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, with JavaScript OFF (the console must work without it), against a real
``calendly-brevo run`` with the fake Brevo and fake Calendly.

Screenshots of each page land in ``test-artifacts/console/``. The tests skip where no Chromium is
installed, and fail in CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from calendly_brevo.key_labels import fingerprint
from calendly_brevo.queueing import sqlite_queue_path
from calendly_brevo.signature import HEADER, sign
from tests import payloads as p
from tests.conftest import SIGNING_KEY
from tests.e2e.procs import Proc, free_port, wait_for, wait_http
from tests.fakes.brevo import running_fake_brevo
from tests.fakes.calendly import running_fake_calendly

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "console-admin-token-Qm8vR2xT5nW9pL3kZ7bY"
BREVO_KEY = "xkeysib-console-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
ADA = "ada.console@example.com"
MALLORY = "mallory.console@example.com"
GRACE = "grace.console@example.com"  # Brevo refuses her custom event once: a dead letter
HOSTILE_NAME = '<img src=x onerror="document.title=1">Mallory'


def _chromium() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed — CI must provide it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


@dataclass
class Console:
    #: The admin listener, where the console lives; the public one serves only webhooks.
    base: str
    public: str
    proc: Proc
    data_dir: Path
    dead_letter_id: int

    def url(self, path: str = "") -> str:
        return f"{self.base}/console/{path}"


def _deliver(url: str, doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    r = httpx.post(
        url,
        content=raw,
        headers={
            HEADER: sign(SIGNING_KEY, raw, int(time.time())),
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert r.status_code == 202, r.text


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    port, admin_port = free_port(), free_port()
    with running_fake_brevo(api_key=BREVO_KEY) as brevo, running_fake_calendly() as calendly:
        for name, kind in (
            ("CALENDLY_EVENT_TYPE", "text"),
            ("MEETING_DATE", "date"),
            ("BOOKING_STATUS", "text"),
        ):
            brevo.add_attribute(name, kind)
        env = {
            "CONNECTOR_CONFIG": "",
            "CONNECTOR_DATA_DIR": str(tmp / "data"),
            "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
            "CALENDLY_ACCESS_TOKEN": calendly.pat,
            "CALENDLY_API_URL": calendly.base_url,
            "CONNECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
            "BREVO_API_KEY": BREVO_KEY,
            "BREVO_API_URL": brevo.base_url,
            "PUBLIC_URL": "https://connector.example.com",
            "PORT": str(port),
            "ADMIN_PORT": str(admin_port),
            "LOG_FORMAT": "json",
            "REDIS_URL": "",
            "DATABASE_URL": "",
        }
        proc = Proc(["run"], env, tmp / "run.log")
        try:
            public = f"http://127.0.0.1:{port}"
            wait_http(f"{public}/readyz", proc)
            hook = f"{public}/webhooks/calendly"
            _deliver(hook, p.invitee_created(email=ADA, name="Ada Lovelace"))
            _deliver(
                hook,
                p.invitee_created(
                    email=MALLORY, name=HOSTILE_NAME, invitee_uri=p.invitee_uri("CM", "CM1")
                ),
            )
            broken = p.invitee_created(email=ADA, invitee_uri=p.invitee_uri("CB", "CB1"))
            del broken["payload"]["email"]
            _deliver(hook, broken)
            queue = sqlite_queue_path(tmp / "data")

            def drained() -> bool:
                assert proc.alive(), proc.log()
                with sqlite3.connect(queue, timeout=10) as conn:
                    return (
                        int(conn.execute("SELECT count(*) FROM queue_messages").fetchone()[0]) == 0
                    )

            wait_for(drained, timeout=30, what="an empty queue")
            brevo.inject("400", path=r"/events$", method="POST", count=1)
            _deliver(hook, p.invitee_created(email=GRACE, invitee_uri=p.invitee_uri("CG", "CG1")))
            wait_for(drained, timeout=30, what="an empty queue")
            with sqlite3.connect(tmp / "data" / "calendly-brevo.db", timeout=10) as conn:
                (dl_id,) = conn.execute(
                    "SELECT id FROM dead_letters WHERE reason = 'no_email'"
                ).fetchone()
            yield Console(f"http://127.0.0.1:{admin_port}", public, proc, tmp / "data", int(dl_id))
        finally:
            proc.stop()


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A logged-in page with JavaScript off."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(console.url())
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    yield page
    context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_console_asks_for_the_admin_token_and_refuses_a_wrong_one(
    browser: Any, console: Console
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    response = page.goto(console.url("dead-letters"))
    assert response.url.startswith(console.url("login"))
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert "That is not the admin token." in page.inner_text("main")
    shot(page, "login-refused")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    assert page.url == console.url("dead-letters"), "back where the operator wanted to go"
    cookie = next(c for c in context.cookies() if c["name"] == "cb_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookie["value"]
    context.close()


def test_the_overview_shows_health_throughput_queue_dead_letters_and_subscription(
    page: Any,
) -> None:
    assert page.inner_text("#health").startswith("Healthy")
    assert "events applied per minute" in page.inner_text("#throughput")
    assert page.inner_text("#queue").startswith("ready 0")
    assert page.inner_text("#held").startswith("0 taken by `run`")
    assert page.inner_text("#stale") == "none"  # every push was under today's mapping
    assert page.inner_text("#dead-letters") == "2 open"
    assert page.inner_text("#subscription") == "missing"  # the probe asked the fake Calendly
    assert page.locator("#dry-run").count() == 0
    shot(page, "overview")


def test_a_contact_search_shows_the_persons_trace(page: Any) -> None:
    page.click("text=Contacts")
    page.fill("#email", ADA.upper())
    page.click("text=Trace")
    assert page.inner_text("#trace-email") == ADA
    projection = page.inner_text("#projection")
    assert "booked" in projection and "Ada" in projection
    deliveries = page.inner_text("#deliveries")
    assert "invitee.created" in deliveries and "applied" in deliveries
    assert "contact, event" in deliveries
    # The key that verified the webhook, by its place in the config and fingerprint only.
    assert f"signing_key:{fingerprint(SIGNING_KEY)}" in deliveries
    assert SIGNING_KEY not in page.content()
    calls = [row.split("\t") for row in page.inner_text("#brevo-calls").splitlines()[1:]]
    # Her custom event went alone or in one batch with Mallory's (coalescing: brevo.batch).
    assert [(c[1], c[3], c[4]) for c in calls] in (
        [("invitee.created", "POST /contacts", "201"), ("invitee.created", "POST /events", "204")],
        [
            ("invitee.created", "POST /contacts", "201"),
            ("invitee.created", "POST /events/batch", "202"),
        ],
    )
    assert page.locator("#person-dead-letters").count() == 0
    shot(page, "contact")


def test_a_persons_dead_letter_shows_in_the_trace_with_its_replay_command(page: Any) -> None:
    page.click("text=Contacts")
    page.fill("#email", GRACE)
    page.click("text=Trace")
    dead = page.inner_text("#person-dead-letters")
    assert "brevo_permanent" in dead and "calendly-brevo dlq replay" in dead
    assert "dead" in page.inner_text("#deliveries")
    refused = page.inner_text("#brevo-calls").splitlines()[-1]
    assert "POST /events" in refused and "\t400\t" in refused  # the call Brevo refused
    shot(page, "contact-dead-letter")


def test_values_from_payloads_are_shown_as_text_never_as_markup(page: Any) -> None:
    page.goto(page.url.split("/console/")[0] + f"/console/contacts?email={MALLORY}")
    shown = page.inner_text("#projection")  # the name is split into FIRSTNAME / LASTNAME
    assert "FIRSTNAME\t<img" in shown and 'onerror="document.title=1">Mallory' in shown
    assert page.locator("#projection img").count() == 0
    assert "&lt;img" in page.content()


def test_a_dead_letter_is_replayed_only_after_confirmation(page: Any, console: Console) -> None:
    page.click("text=Dead letters")
    assert page.locator("#dead-letter-list tr").count() == 3  # header + two dead letters
    page.click(f"#dead-letter-list a >> text='{console.dead_letter_id}'")
    assert "invitee has no email" in page.inner_text("#error")
    assert '"invitee.created"' in page.inner_text("#payload")
    shot(page, "dead-letter")
    page.click("#replay-link")
    assert page.inner_text("h1") == f"Replay dead letter {console.dead_letter_id}?"
    shot(page, "confirm-replay")
    page.click("#confirm-replay")
    assert "Replayed" in page.inner_text("#replayed")
    page.click("text=Dead letters")
    # The replayed event fails again (still no email) and is dead-lettered anew.
    assert page.url.endswith("/console/dead-letters")


def test_a_form_post_without_its_csrf_token_is_refused(page: Any, console: Console) -> None:
    response = page.request.post(
        console.url(f"dead-letters/{console.dead_letter_id}/replay"), form={"csrf": "forged"}
    )
    assert response.status == 403
    assert "form token" in response.text()


def test_the_webhook_page_checks_and_repairs_the_subscription_without_showing_a_key(
    page: Any,
) -> None:
    page.click("text=Webhook")
    page.click("#check")
    assert page.inner_text("#check-result").startswith("FAIL: missing")
    page.click("#repair")
    result = page.inner_text("#check-result")
    assert result.startswith("OK"), result
    assert "https://connector.example.com/webhooks/calendly" in page.inner_text(
        "#stored-subscription"
    )
    assert "never shown here" in page.inner_text("main")
    shot(page, "webhooks")


def test_logging_out_ends_the_session(page: Any, console: Console) -> None:
    page.click("text=Log out")
    assert "/console/login" in page.url
    page.goto(console.url())
    assert "/console/login" in page.url


def test_the_console_is_not_served_on_the_public_port(console: Console) -> None:
    for path in ("/console/", "/console/login"):
        assert httpx.get(console.public + path, timeout=10).status_code == 404


def test_every_console_answer_forbids_framing_scripts_and_caching(console: Console) -> None:
    r = httpx.get(console.url("login"), timeout=10)
    assert r.status_code == 200
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"
    bearer = httpx.get(
        console.url(), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    assert bearer.status_code == 200 and "Healthy" in bearer.text
    wrong = httpx.get(console.url(), headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
