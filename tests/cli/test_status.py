"""`calendly-brevo status` on a populated embedded SQLite store: one screen with queue depth, lag,
the last event applied, dead letters, the rate-limit buckets and the webhook subscription."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from calendly_brevo.calendly.subscription_store import STATE_NAME, note_state, remember, remembered
from calendly_brevo.lifecycle import status_numbers
from cli.main import cli
from tests import payloads
from tests.worker.test_pipeline import make_pipeline

URL = "https://connector.example.com/webhooks/calendly"
SUB_URI = "https://api.calendly.com/webhook_subscriptions/SUB1"


@pytest.fixture
def populated(tmp_path: Path) -> Any:
    """Two events applied (the last one 2.5 s after receipt), one duplicate, one ignored, two
    dead letters, three messages waiting and an installed subscription."""
    pipeline, brevo, services = make_pipeline(tmp_path)
    first = payloads.invitee_created(email="ada@example.com")
    assert pipeline.process(payloads.body(first).decode(), time.time() - 60).status == "applied"
    assert pipeline.process(payloads.body(first).decode(), time.time()).status == "duplicate"
    canceled = payloads.invitee_canceled(email="ada@example.com")
    assert pipeline.process(payloads.body(canceled).decode(), time.time() - 2.5).status == "applied"
    ignored = payloads.event_type_created()
    assert pipeline.process(payloads.body(ignored).decode(), time.time()).status == "ignored"
    assert pipeline.process("garbage", time.time()).status == "dead_lettered"
    brevo.fail_upserts, brevo.permanent = 1, True
    bad = payloads.invitee_created(
        email="bob@example.com", invitee_uri=payloads.invitee_uri("E2", "I2")
    )
    assert pipeline.process(payloads.body(bad).decode(), time.time()).status == "dead_lettered"
    for _ in range(3):
        services.enqueuer.enqueue(
            payloads.body(first).decode(), received_at=time.time(), source="t"
        )
    remember(services.sessions, {"uri": SUB_URI, "url": URL, "scope": "organization"})
    yield services
    services.close()


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def rows(output: str) -> dict[str, str]:
    """The status table as {label: value} (labels are separated from values by 2+ spaces)."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2:
            found[parts[0]] = parts[1]
    return found


def test_status_numbers_read_the_subscription_where_webhooks_install_stores_it(
    populated: Any,
) -> None:
    n = status_numbers(populated.sessions)
    assert n["subscription"] == remembered(populated.sessions)
    assert n["subscription"]["uri"] == SUB_URI
    assert n["last_event"] == "invitee.canceled"
    assert 2.0 <= n["last_lag_seconds"] < 30
    assert n["events_by_status"] == {"applied": 2, "ignored": 1, "dead": 1}
    assert n["dead_letters_open"] == 2


def test_status_shows_every_number_on_one_screen(populated: Any, env: dict[str, str]) -> None:
    result = invoke(env, "status")
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert table["queue"] == "ready 3, delayed 0, dead 0"
    assert table["last event applied"].startswith("invitee.canceled at ")
    lag = float(table["lag (last event)"].removesuffix("s"))
    assert 2.0 <= lag < 30
    assert table["events"] == "applied 2, dead 1, ignored 1"
    assert table["dead letters"] == "2 open"
    # The embedded bucket is in the running process's memory: this process cannot see it.
    assert table["rate limiter"] == "in the running process (embedded mode)"
    assert table["webhook subscription"] == (
        f"installed (organization) {URL}, not checked yet (`calendly-brevo webhooks check`)"
    )
    assert table["mode"] == "embedded"
    assert table["brevo"] == "dry run"
    assert len(result.output.splitlines()) <= 24  # one screen


def test_status_shows_the_state_the_last_webhooks_check_saw(
    populated: Any, env: dict[str, str]
) -> None:
    note_state(populated.sessions, URL, "disabled", "organization")
    table = rows(invoke(env, "status").output)
    assert table["webhook subscription"].startswith(f"disabled (organization) {URL}, checked 20")

    note_state(populated.sessions, URL, "active", "organization")
    assert rows(invoke(env, "status").output)["webhook subscription"].startswith("active ")
    assert (remembered(populated.sessions) or {}).get("uri") == SUB_URI


def test_status_without_a_subscription_says_how_to_install_one(
    populated: Any, env: dict[str, str]
) -> None:
    remember(populated.sessions, None)
    table = rows(invoke(env, "status").output)
    assert "webhooks install" in table["webhook subscription"]
    assert STATE_NAME == "calendly.webhook_subscription"


# --- the probe that keeps webhook_subscription_active current in the long-running processes -----
def active(scope: str = "organization") -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("calendly_brevo_webhook_subscription_active", {"scope": scope})


def test_without_credentials_the_probe_reads_what_webhooks_check_stored(
    populated: Any,
) -> None:
    from calendly_brevo.calendly.subscription_probe import SubscriptionProbe

    clock = [0.0]
    probe = SubscriptionProbe(
        populated.settings, populated.sessions, stored_interval=60, clock=lambda: clock[0]
    )
    assert probe.refresh() is None  # installed, never checked: the gauge is not set from this
    note_state(populated.sessions, URL, "disabled", "organization")
    assert probe.refresh() is None  # read at most every stored_interval
    clock[0] = 61
    assert probe.refresh() == "disabled"
    assert active() == 0


def test_with_a_token_the_probe_asks_calendly_at_most_every_interval(
    tmp_path: Path,
) -> None:
    from calendly_brevo.bootstrap import Services
    from calendly_brevo.calendly.subscription_probe import SubscriptionProbe
    from calendly_brevo.db.migrate import upgrade
    from tests.conftest import make_settings
    from tests.fakes.calendly import running_fake_calendly

    with running_fake_calendly() as cal:
        public = "https://probe.example.com"
        settings = make_settings(
            tmp_path,
            CALENDLY_ACCESS_TOKEN=cal.pat,
            CALENDLY_API_URL=cal.base_url,
            PUBLIC_URL=public,
        )
        services = Services(settings)
        upgrade(services.engine)
        clock = [0.0]
        probe = SubscriptionProbe(settings, services.sessions, interval=300, clock=lambda: clock[0])
        try:
            assert probe.refresh() == "missing"  # nothing subscribed for PUBLIC_URL yet
            assert active() == 0
            asked = len(cal.state.requests)
            uri = "https://api.calendly.com/webhook_subscriptions/PROBE1"
            cal.state.subscriptions[uri] = {
                "uri": uri,
                "callback_url": public + "/webhooks/calendly",
                "created_at": "2024-01-01T00:00:00.000000Z",
                "state": "active",
                "scope": "organization",
                "organization": cal.state.org,
                "user": None,
            }
            clock[0] = 299
            assert probe.refresh() == "missing" and len(cal.state.requests) == asked
            clock[0] = 301
            assert probe.refresh() == "active"
            assert active() == 1
            assert (remembered(services.sessions) or {}).get("state") == "active"
        finally:
            services.close()


def test_status_json_counts_the_events_applied_in_the_last_quarter_hour(
    populated: Any, env: dict[str, str]
) -> None:
    import json

    result = invoke(env, "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["database"]["applied_per_minute"] == round(2 / 15, 2)
    assert report["queue"] == {"ok": True, "ready": 3, "delayed": 0, "dead": 0}
    assert report["rate_limiter"] == {"ok": True, "buckets": None}


def test_status_shows_what_a_killed_embedded_run_holds(populated: Any, env: dict[str, str]) -> None:
    table = rows(invoke(env, "status").output)
    assert table["held by dead workers"].startswith("0 taken by `run`")


@pytest.mark.integration
def test_status_names_the_messages_a_dead_redis_worker_holds_and_the_fix_once_overdue(
    tmp_path: Path, env: dict[str, str], redis_url: str
) -> None:
    import redis

    from tests.worker.test_maintenance import dead_worker_holding

    client = redis.Redis.from_url(redis_url)
    broker = dead_worker_holding(client, 2)
    env = env | {"REDIS_URL": redis_url}
    assert rows(invoke(env, "status").output)["held by dead workers"].startswith("none")
    # Silent for 70 s (past the 60 s timeout, within one interval of it): requeue is due.
    client.zadd("dramatiq:__heartbeats__", {broker.broker_id: (time.time() - 70) * 1000})
    line = rows(invoke(env, "status").output)["held by dead workers"]
    assert line.startswith("2 message(s) held by 1 worker(s) silent for 70s; requeued within 75s")
    # Silent for ten minutes: nothing is maintaining the queue.
    client.zadd("dramatiq:__heartbeats__", {broker.broker_id: (time.time() - 600) * 1000})
    line = rows(invoke(env, "status").output)["held by dead workers"]
    assert "silent for 600s" in line and "fix: no queue maintenance is running" in line
    client.close()


def test_contacts_pushed_under_an_earlier_mapping_show_as_stale_with_the_fix(
    populated: Any, env: dict[str, str]
) -> None:
    import json
    from datetime import UTC, datetime

    from calendly_brevo.config import load_settings
    from calendly_brevo.ledger import PushedProjection
    from calendly_brevo.pushed import mapping_fingerprint

    def stale() -> int:
        return int(json.loads(invoke(env, "status", "--json").output)["database"]["stale_contacts"])

    def pushed(email: str, fingerprint: str) -> None:
        when = datetime(2026, 1, 1, tzinfo=UTC)
        populated.ledger.record_pushed(PushedProjection(email, {}, (), "h", fingerprint, when))

    # Ada was pushed by the fixture's pipeline, whose mapping is not the CLI's config.
    assert stale() == 1
    pushed("cy@example.com", mapping_fingerprint(load_settings(None, env=env).rules))
    assert stale() == 1, "a contact pushed under today's mapping is not stale"
    pushed("di@example.com", "an-earlier-mapping")
    assert stale() == 2
    line = rows(invoke(env, "status").output)["stale contacts"]
    assert line == "2 pushed under an earlier mapping; fix: `calendly-brevo resync`"
    doctor = json.loads(CliRunner().invoke(cli, ["doctor", "--json"], env=env).output)
    [check] = [c for c in doctor["checks"] if c["name"] == "stale contacts"]
    assert check["status"] == "WARN" and "resync" in str(check["fix"])
