"""Observability end to end: real receiver and worker processes (Redis, Postgres, the fake Brevo
and the fake Calendly) take every kind of traffic, and their /metrics say exactly what happened.

Traffic: accepted bookings, one of each rejected kind (unsigned, malformed signature, forged,
stale, too large, malformed body), a duplicate delivery, an ignored ``event_type.created``, a
permanent Brevo fault (dead letter), a 5xx and a 429 (retried, then applied), and a receiver whose
Redis is down. Then: every metric has the value the traffic implies (Brevo's against what the
fake Brevo saw), every metric the dashboard and the alerts use is really produced, one JSON log
line per processed event carries id, name, outcome and duration, and no secret or raw email
appears in any log line or /metrics output.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from calendly_brevo.crypto import generate_key
from calendly_brevo.signature import HEADER, sign
from calendly_brevo.simulate import build_event, example
from tests.conftest import SIGNING_KEY
from tests.deploy.promql import metric_names
from tests.e2e.procs import Proc, free_port, run_cli, started, wait_for, wait_http
from tests.fakes.brevo import running_fake_brevo
from tests.fakes.calendly import running_fake_calendly
from tests.fakes.calendly_state import FakeCalendly

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
BREVO_KEY = "xkeysib-observability-0123456789abcdef"
CALENDLY_TOKEN = "calendly-pat-observability-Zx81Qp"
ADMIN_TOKEN = "admin-token-observability-Kw52-Rt8Yp"
ENCRYPTION_KEY = generate_key()
SECRETS = (SIGNING_KEY, BREVO_KEY, CALENDLY_TOKEN, ADMIN_TOKEN, ENCRYPTION_KEY)
EVENT_TYPE = "https://api.calendly.com/event_types/DEMO0001"
ACTOR = "process_event"
KNOWN = {"invitee.created", "event_type.created"}
#: Metrics the dashboard or alerts use that this traffic cannot produce, and why:
NOT_PRODUCED_HERE = {
    # exported by the process that runs `calendly-brevo backfill` / `reconcile`
    "calendly_brevo_backfill_envelopes_total",
    # a labelled counter appears on the first nack; the pipeline dead-letters by itself and
    # Retries' backstop is far above worker.max_retries, so a nack means the database is down
    "dramatiq_message_rejects_total",
    # appears on the first in-doubt lookup (tests/e2e/test_delivery.py's lost answers)
    "calendly_brevo_event_resend_checks_total",
    # appear on the first batch of two or more (this test's events come one at a time);
    # tests/worker/test_batched_pipeline.py checks them
    "calendly_brevo_brevo_batches_total",
    "calendly_brevo_brevo_batch_items_in_doubt_total",
}

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
worker:
  min_backoff_seconds: 0.2
  max_backoff_seconds: 1
"""


@dataclass
class Scrape:
    text: str
    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def get(cls, url: str) -> Scrape:
        text = httpx.get(url, timeout=10).text
        samples = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(v for n, ls, v in self.samples if n == name and labels.items() <= ls.items())

    def has(self, name: str, **labels: str) -> bool:
        return any(n == name and labels.items() <= ls.items() for n, ls, _ in self.samples)

    @property
    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


def post(url: str, body: bytes, header: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[HEADER] = header
    return httpx.post(url, content=body, headers=headers, timeout=10)


def signed_header(body: bytes, *, key: str = SIGNING_KEY, at: float | None = None) -> str:
    return sign(key, body, int(time.time() if at is None else at))


def booking(email: str, invitee: str) -> bytes:
    doc = build_event("invitee.created", email=email, name="Test Person", event_type_uri=EVENT_TYPE)
    doc["payload"]["uri"] = f"https://api.calendly.com/scheduled_events/EV/invitees/{invitee}"
    return json.dumps(doc).encode()


def dashboard_and_alert_metrics() -> set[str]:
    dashboard = json.loads((REPO / "deploy/grafana/calendly-brevo.json").read_text())
    exprs = [
        t["expr"]
        for panel in dashboard["panels"]
        for p in [panel, *panel.get("panels", [])]
        for t in p.get("targets", [])
    ]
    alerts = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    return {name for expr in exprs for name in metric_names(expr)} - {"up"}


def json_log_lines(*procs: Proc) -> list[dict[str, Any]]:
    lines = []
    for proc in procs:
        for line in proc.log().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


def assert_nothing_leaks(texts: Iterable[str], emails: Iterable[str]) -> None:
    for text in texts:
        lowered = text.lower()
        for secret in SECRETS:
            assert secret not in text
        for email in emails:
            assert email.lower() not in lowered, email


def test_every_metric_log_line_and_redaction_after_real_traffic(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    started_at = time.time()
    calendly = FakeCalendly()
    calendly.add_pat(CALENDLY_TOKEN)
    port, metrics_port, down_port = free_port(), free_port(), free_port()
    admin_port, down_admin_port = free_port(), free_port()
    callback = f"http://127.0.0.1:{port}/webhooks/calendly"
    calendly.subscriptions["https://api.calendly.com/webhook_subscriptions/WH1"] = {
        "uri": "https://api.calendly.com/webhook_subscriptions/WH1",
        "callback_url": callback,
        "created_at": "2024-01-01T00:00:00.000000Z",
        "updated_at": "2024-01-01T00:00:00.000000Z",
        "retry_started_at": None,
        "state": "active",
        "events": ["invitee.created"],
        "scope": "organization",
        "organization": calendly.org,
        "user": None,
        "group": None,
        "creator": calendly.user["uri"],
    }
    with (
        running_fake_brevo(api_key=BREVO_KEY, lists={11: "Demo"}) as fake,
        running_fake_calendly(calendly) as cal,
    ):
        for name, kind in (
            ("CALENDLY_EVENT_TYPE", "text"),
            ("MEETING_DATE", "date"),
            ("BOOKING_STATUS", "text"),
        ):
            fake.add_attribute(name, kind)
        cfg = tmp_path / "config.yaml"
        cfg.write_text(CONFIG)
        env = {
            "CONNECTOR_CONFIG": str(cfg),
            "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
            "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
            "CALENDLY_ACCESS_TOKEN": CALENDLY_TOKEN,
            "CALENDLY_API_URL": cal.base_url,
            "CONNECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
            "CONNECTOR_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "BREVO_API_KEY": BREVO_KEY,
            "BREVO_API_URL": fake.base_url,
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_url,
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "ADMIN_PORT": str(admin_port),
            "METRICS_PORT": str(metrics_port),
            "LOG_FORMAT": "json",
        }
        migrated = run_cli(["migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
        worker_env = env | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
        down_env = env | {
            "PORT": str(down_port),
            "ADMIN_PORT": str(down_admin_port),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }
        with (
            started(["receiver"], env, tmp_path / "receiver.log") as receiver,
            started(["receiver"], down_env, tmp_path / "receiver-down.log") as down,
            started(
                ["worker", "--processes", "1", "--threads", "2"],
                worker_env,
                tmp_path / "worker.log",
            ) as worker,
        ):
            wait_http(f"http://127.0.0.1:{port}/readyz", receiver)
            wait_http(f"http://127.0.0.1:{down_port}/healthz", down)
            wait_http(f"http://127.0.0.1:{metrics_port}/healthz", worker)
            hook = f"http://127.0.0.1:{port}/webhooks/calendly"
            worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"

            def processed(outcome: str) -> float:
                return Scrape.get(worker_metrics).value(
                    "calendly_brevo_events_processed_total", outcome=outcome
                )

            # --- accepted, duplicate, ignored ------------------------------------------------
            ada = booking("Ada.Lovelace@Example.com", "ADA")
            assert post(hook, ada, signed_header(ada)).status_code == 202
            assert post(hook, ada, signed_header(ada)).status_code == 202  # Calendly's retry
            ignored = json.dumps(example("event_type.created")).encode()
            assert post(hook, ignored, signed_header(ignored)).status_code == 202

            # --- one of each rejected kind -----------------------------------------------------
            assert post(hook, ada, None).status_code == 401  # unsigned
            assert post(hook, ada, "nonsense").status_code == 401  # malformed signature
            forged = signed_header(ada, key="not-the-signing-key-0000")
            assert post(hook, ada, forged).status_code == 401
            assert post(hook, ada, signed_header(ada, at=time.time() - 3600)).status_code == 401
            huge = b'{"event":"invitee.created","payload":{"x":"' + b"x" * 300_000 + b'"}}'
            assert post(hook, huge, signed_header(huge)).status_code == 413
            garbage = b"not json at all"
            assert post(hook, garbage, signed_header(garbage)).status_code == 400
            # --- a receiver whose Redis is down ------------------------------------------------
            down_hook = f"http://127.0.0.1:{down_port}/webhooks/calendly"
            assert post(down_hook, ada, signed_header(ada)).status_code == 503

            wait_for(
                lambda: (
                    processed("applied") == 1
                    and processed("duplicate") == 1
                    and processed("ignored") == 1
                ),
                timeout=60,
                what="applied, duplicate and ignored",
            )
            # --- a permanent fault: dead letter ------------------------------------------------
            fake.inject("400", family="contacts", count=1)
            bob = booking("bob@example.com", "BOB")
            assert post(hook, bob, signed_header(bob)).status_code == 202
            wait_for(lambda: processed("dead_lettered") == 1, timeout=60, what="dead letter")
            # --- a 5xx and a 429: retried, then applied ----------------------------------------
            fake.inject("5xx", family="contacts", count=1)
            carol = booking("carol@example.com", "CAROL")
            assert post(hook, carol, signed_header(carol)).status_code == 202
            wait_for(lambda: processed("applied") == 2, timeout=60, what="carol after a 5xx")
            fake.inject("429", family="events", count=1)
            dave = booking("dave@example.com", "DAVE")
            assert post(hook, dave, signed_header(dave)).status_code == 202
            wait_for(lambda: processed("applied") == 3, timeout=60, what="dave after a 429")
            # The supervisor refreshes the queue and dead-letter gauges every 10 s.
            wait_for(
                lambda: (
                    Scrape.get(worker_metrics).value("calendly_brevo_dead_letters") == 1
                    and Scrape.get(worker_metrics).has("calendly_brevo_queue_depth", kind="ready")
                ),
                timeout=30,
                what="gauges refreshed",
            )

            rx = Scrape.get(f"http://127.0.0.1:{admin_port}/metrics")
            rx_down = Scrape.get(f"http://127.0.0.1:{down_admin_port}/metrics")
            wk = Scrape.get(worker_metrics)
            state = fake.snapshot()
            logs = [receiver.log(), down.log(), worker.log()]
            events = json_log_lines(worker)

    # --- receiver --------------------------------------------------------------------------------
    received = "calendly_brevo_webhooks_received_total"
    assert rx.value(received, event="invitee.created", outcome="accepted") == 5
    assert rx.value(received, event="event_type.created", outcome="accepted") == 1
    for outcome in (
        "unsigned",
        "malformed_signature",
        "bad_signature",
        "stale",
        "too_large",
        "malformed",
    ):
        assert rx.value(received, event="other", outcome=outcome) == 1, outcome
    assert rx.value(received) == 12
    assert rx_down.value(received, event="invitee.created", outcome="queue_down") == 1
    assert rx.value("calendly_brevo_webhook_receive_seconds_count") == 12
    assert rx.value("calendly_brevo_webhook_receive_seconds_bucket", le="+Inf") == 12
    assert rx.value("process_resident_memory_bytes") > 0

    # --- worker: events ---------------------------------------------------------------------------
    processed_total = "calendly_brevo_events_processed_total"
    expected = {
        ("invitee.created", "applied"): 3,
        ("invitee.created", "duplicate"): 1,
        ("invitee.created", "dead_lettered"): 1,
        ("invitee.created", "retried"): 1,  # the 5xx
        ("invitee.created", "rate_limited"): 1,  # the 429: a wait
        ("event_type.created", "ignored"): 1,
    }
    for (event, outcome), n in expected.items():
        assert wk.value(processed_total, event=event, outcome=outcome) == n, (event, outcome)
    assert wk.value(processed_total) == sum(expected.values())
    assert wk.value("calendly_brevo_event_lag_seconds_count", event="invitee.created") == 3
    assert wk.value("calendly_brevo_event_lag_seconds_sum") > 0
    attempts = 8  # ada, its duplicate, the ignored one, bob, carol twice, dave twice
    assert wk.value("calendly_brevo_event_processing_seconds_count") == attempts
    assert (
        wk.value(
            "calendly_brevo_dead_lettered_total", event="invitee.created", reason="brevo_permanent"
        )
        == 1
    )
    assert wk.value("calendly_brevo_dead_letters") == 1
    assert wk.value("calendly_brevo_queue_depth", queue="calendly", kind="ready") == 0
    assert wk.value("calendly_brevo_last_event_applied_timestamp_seconds") >= started_at

    # --- worker: Brevo, as the fake Brevo saw it -------------------------------------------------
    seen = Counter((r["family"], str(r["status"])) for r in state["requests"])
    exported = {
        (ls["family"], ls["status"]): v
        for n, ls, v in wk.samples
        if n == "calendly_brevo_brevo_requests_total"
    }
    assert exported == {k: float(v) for k, v in seen.items()}
    assert ("contacts", "400") in exported
    assert any(f == "contacts" and s.startswith("5") for f, s in exported)
    for family in {f for f, _ in seen}:
        n = sum(v for (f, _), v in seen.items() if f == family)
        assert wk.value("calendly_brevo_brevo_request_seconds_count", family=family) == n
        # every request waited for a token from the shared bucket first
        assert wk.value("calendly_brevo_ratelimit_wait_seconds_count", family=family) == n
    assert wk.value("calendly_brevo_brevo_429_total", family="events") == 1
    assert wk.value("calendly_brevo_brevo_ratelimit_limit", family="contacts") > 0
    assert wk.has("calendly_brevo_brevo_ratelimit_remaining", family="events")

    # --- worker: the subscription (a live check against the fake Calendly) ------------------
    assert wk.value("calendly_brevo_webhook_subscription_active", scope="organization") == 1
    assert wk.value("calendly_brevo_calendly_requests_total", status="200") >= 2

    # --- worker: Dramatiq's own metrics and the process tree --------------------------------
    assert wk.value("dramatiq_messages_total", actor_name=ACTOR) == attempts
    assert wk.value("dramatiq_message_errors_total", actor_name=ACTOR) == 2  # the two Retry
    # Dramatiq counts a retry twice: when it goes to the delay queue and when it comes back
    # (after_enqueue sees "retries" both times). Only the 5xx is a retry there: the 429 is a
    # wait, kept out of Dramatiq's "retries" (worker.max_retries counts failures only).
    # calendly_brevo_events_processed_total tells them apart: retried 1, rate_limited 1.
    assert wk.value("dramatiq_message_retries_total", actor_name=ACTOR) == 1 * 2
    assert wk.value("dramatiq_message_rejects_total", actor_name=ACTOR) == 0
    assert wk.value("dramatiq_messages_inprogress", actor_name=ACTOR) == 0
    assert wk.value("dramatiq_message_duration_milliseconds_count", actor_name=ACTOR) == attempts
    assert wk.value("process_resident_memory_bytes") > 50_000_000  # supervisor + one worker
    assert wk.value("process_cpu_seconds_total") > 0
    assert wk.value("process_start_time_seconds") > 0

    # --- labels stay low-cardinality -----------------------------------------------------------
    for scrape in (rx, wk):
        for name, labels, _ in scrape.samples:
            for value in labels.values():
                assert "@" not in value and "calendly.com/" not in value, (name, labels)
                assert len(value) < 40, (name, labels)

    # --- everything the dashboard and the alerts use is really produced ----------------------
    produced = rx.names | rx_down.names | wk.names
    missing = dashboard_and_alert_metrics() - produced - NOT_PRODUCED_HERE
    assert not missing, missing

    # --- one log line per processed event ------------------------------------------------------
    per_event = [e for e in events if str(e.get("event", "")).startswith("event_")]
    outcomes = Counter(e["outcome"] for e in per_event)
    assert outcomes == Counter(
        {
            "applied": 3,
            "duplicate": 1,
            "ignored": 1,
            "dead_lettered": 1,
            "retried": 1,
            "rate_limited": 1,
        }
    )
    for e in per_event:
        assert len(e["event_id"]) == 64 and e["event_name"] in KNOWN, e
        assert isinstance(e["duration_ms"], float) and e["duration_ms"] >= 0, e
        assert e["level"] in {"info", "warning", "error"} and "timestamp" in e

    # --- no secret, no raw email, anywhere ------------------------------------------------------
    emails = (
        "Ada.Lovelace@Example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    )
    assert_nothing_leaks([*logs, rx.text, rx_down.text, wk.text], emails)
