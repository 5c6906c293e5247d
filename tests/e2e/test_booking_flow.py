"""One Calendly booking travels receiver → queue → worker → Brevo, in both ways of running."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from calendly_brevo.signature import HEADER, sign
from calendly_brevo.simulate import build_event
from tests.conftest import SIGNING_KEY
from tests.e2e.procs import free_port, run_cli, started, wait_for, wait_http
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo

pytestmark = pytest.mark.e2e

BREVO_KEY = "xkeysib-e2e-0123456789"
EVENT_TYPE = "https://api.calendly.com/event_types/DEMO0001"

CONFIG = f"""
connectors:
  calendly:
    event_mapping:
      demo:
        list_id: 11
        event_type_uri: "{EVENT_TYPE}"
field_mapping:
  email: email
  name: FIRSTNAME
  last_name: LASTNAME
  event_type_name: CALENDLY_EVENT_TYPE
  scheduled_at: MEETING_DATE
  status: BOOKING_STATUS
"""


def post_signed(url: str, doc: dict[str, object]) -> httpx.Response:
    body = json.dumps(doc).encode()
    headers = {
        HEADER: sign(SIGNING_KEY, body, int(time.time())),
        "Content-Type": "application/json",
    }
    return httpx.post(url, content=body, headers=headers, timeout=10)


def brevo_fake() -> AbstractContextManager[FakeBrevoServer]:
    return running_fake_brevo(
        api_key=BREVO_KEY,
        lists={11: "Demo"},
    )


def setup_attributes(fake) -> None:  # type: ignore[no-untyped-def]
    fake.add_attribute("CALENDLY_EVENT_TYPE", "text")
    fake.add_attribute("MEETING_DATE", "date")
    fake.add_attribute("BOOKING_STATUS", "text")


def base_env(tmp_path: Path, brevo_url: str) -> dict[str, str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    return {
        "CONNECTOR_CONFIG": str(cfg),
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "BREVO_API_KEY": BREVO_KEY,
        "BREVO_API_URL": brevo_url,
        "LOG_FORMAT": "json",
    }


@pytest.mark.integration
def test_signed_booking_becomes_a_brevo_contact_through_redis_and_postgres(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with brevo_fake() as fake:
        setup_attributes(fake)
        port, metrics_port = free_port(), free_port()
        env = base_env(tmp_path, fake.base_url) | {
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_url,
            "PORT": str(port),
            "METRICS_PORT": str(metrics_port),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        }
        migrated = run_cli(["migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
        with (
            started(["receiver"], env, tmp_path / "receiver.log") as receiver,
            started(
                ["worker", "--processes", "1", "--threads", "2"], env, tmp_path / "worker.log"
            ) as worker,
        ):
            wait_http(f"http://127.0.0.1:{port}/readyz", receiver)
            wait_http(f"http://127.0.0.1:{metrics_port}/healthz", worker)
            doc = build_event(
                "invitee.created",
                email="Ada.Lovelace@Example.com",
                name="Ada Lovelace",
                event_type_uri=EVENT_TYPE,
            )
            r = post_signed(f"http://127.0.0.1:{port}/webhooks/calendly", doc)
            assert r.status_code == 202, r.text

            wait_for(lambda: fake.snapshot()["contacts"], timeout=30, what="contact in Brevo")
            wait_for(lambda: fake.snapshot()["events"], timeout=30, what="custom event in Brevo")
            state = fake.state
            contact = state.contact("ada.lovelace@example.com")
            assert contact is not None
            assert contact.attributes["FIRSTNAME"] == "Ada"
            assert contact.attributes["BOOKING_STATUS"] == "booked"
            assert 11 in contact.list_ids
            assert [e.event_name for e in state.events] == ["calendly_invitee_created"]
            assert state.violations == []

            # A redelivery of the same webhook changes nothing.
            r = post_signed(f"http://127.0.0.1:{port}/webhooks/calendly", doc)
            assert r.status_code == 202
            time.sleep(1.5)
            assert [e.event_name for e in fake.state.events] == ["calendly_invitee_created"]

            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            applied = 'events_processed_total{event="invitee.created",outcome="applied"} 1.0'
            assert f"calendly_brevo_{applied}" in metrics
            assert 'outcome="duplicate"} 1.0' in metrics
            assert SIGNING_KEY not in receiver.log() + worker.log()
            assert BREVO_KEY not in receiver.log() + worker.log()


def test_embedded_run_applies_a_booking_with_sqlite_and_no_redis(tmp_path: Path) -> None:
    with brevo_fake() as fake:
        setup_attributes(fake)
        port = free_port()
        env = base_env(tmp_path, fake.base_url) | {"PORT": str(port)}
        with started(["run"], env, tmp_path / "run.log") as proc:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc)
            sent = run_cli(
                [
                    "simulate",
                    "invitee.created",
                    "--email",
                    "grace@example.com",
                    "--event-type-uri",
                    EVENT_TYPE,
                ],
                env,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            wait_for(lambda: fake.snapshot()["events"], timeout=30, what="custom event")
            contact = fake.state.contact("grace@example.com")
            assert contact is not None
            assert 11 in contact.list_ids
            assert fake.state.violations == []


def test_embedded_dry_run_logs_the_upsert_it_would_make(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(port),
        "LOG_FORMAT": "json",
        "BREVO_API_KEY": "",
        "CALENDLY_WEBHOOK_SIGNING_KEY": "",
    }
    with started(["run"], env, tmp_path / "run.log") as proc:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        assert "DRY RUN" in proc.log()
        sent = run_cli(["simulate", "invitee.created", "--email", "lin.dry@example.com"], env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_for(
            lambda: "/contacts" in proc.log() and "dry_run" in proc.log(),
            timeout=20,
            what="dry-run log line",
        )
        # Emails are masked at the default log level.
        assert "lin.dry@example.com" not in proc.log()


def test_embedded_queue_keeps_an_accepted_event_across_a_crash(tmp_path: Path) -> None:
    """Accept a webhook, SIGKILL the process before Brevo can take it, restart: it is applied."""
    with brevo_fake() as fake:
        setup_attributes(fake)
        fake.inject("5xx", family="contacts", count=1000)  # Brevo is down: nothing can finish
        port = free_port()
        env = base_env(tmp_path, fake.base_url) | {"PORT": str(port)}
        with started(["run"], env, tmp_path / "run1.log") as proc:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc)
            doc = build_event(
                "invitee.created", email="crash@example.com", event_type_uri=EVENT_TYPE
            )
            assert post_signed(f"http://127.0.0.1:{port}/webhooks/calendly", doc).status_code == 202
            wait_for(lambda: len(fake.state.requests) > 0, timeout=20, what="a first attempt")
            proc.kill()
        fake.clear_faults()
        with started(["run"], env, tmp_path / "run2.log") as proc:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc)
            wait_for(
                lambda: fake.state.contact("crash@example.com") is not None,
                timeout=60,
                what="contact after restart",
            )
            wait_for(lambda: len(fake.state.events) == 1, timeout=30, what="one custom event")
