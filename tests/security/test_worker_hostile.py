"""Hostile input to the worker: payloads that pass the receiver (signed, JSON, an event and a
payload object) but are strange. Each is applied, ignored or dead-lettered with a clear reason;
none raises, and a batch of them through a real Dramatiq worker all finish."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.ledger.common import SqlLedger
from tests import payloads
from tests.worker.fakes import RecordingBrevo
from tests.worker.stub_worker import drain
from tests.worker.test_pipeline import make_pipeline
from worker.pipeline import Pipeline

BASE = payloads.invitee_created(email="base@example.com")
HUGE_QA = [(f"Question {i}?", "x" * 100_000 if i % 50 == 0 else f"answer {i}") for i in range(500)]


def env(**payload: Any) -> dict[str, Any]:
    return payloads.with_payload(BASE, **payload)


def nulls(envelope: dict[str, Any], *keep: str) -> dict[str, Any]:
    out = copy.deepcopy(envelope)
    out["payload"] = {k: (v if k in keep else None) for k, v in out["payload"].items()}
    return out


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"x": value}
    return value


#: (case, envelope or raw body, allowed outcomes, dead-letter reason when dead-lettered)
CASES: list[tuple[str, dict[str, Any] | str, set[str], str | None]] = [
    ("unicode email", env(email="Zoë.Ünïcode@Exämple.com"), {"applied"}, None),
    ("plus-addressed email", env(email="ada+calendly@example.com"), {"applied"}, None),
    ("email with spaces around", env(email="  spaced@example.com \t"), {"applied"}, None),
    ("mailto email", env(email="mailto:mailto@example.com"), {"applied"}, None),
    ("invalid email", env(email="not-an-email"), {"dead_lettered"}, "bad_email"),
    ("two at signs", env(email="a@b@example.com"), {"dead_lettered"}, "bad_email"),
    ("email is a number", env(email=12345), {"dead_lettered"}, "bad_email"),
    ("email is an object", env(email={"x": 1}), {"dead_lettered"}, "no_email"),
    ("missing email", payloads.without(BASE, "email"), {"dead_lettered"}, "no_email"),
    ("missing uri", payloads.without(BASE, "uri"), {"dead_lettered"}, "no_invitee_uri"),
    ("blank uri", env(uri="   "), {"dead_lettered"}, "no_invitee_uri"),
    (
        "huge Q&A",
        env(
            email="qa@example.com",
            questions_and_answers=[
                {"question": q, "answer": a, "position": i} for i, (q, a) in enumerate(HUGE_QA)
            ],
        ),
        {"applied"},
        None,
    ),
    ("Q&A is a string", env(questions_and_answers="lots"), {"dead_lettered"}, None),
    (
        "Q&A items of the wrong type",
        env(questions_and_answers=[1, None, "x", []]),
        {"dead_lettered"},
        None,
    ),
    (
        "Q&A answers of the wrong type",
        env(
            email="qat@example.com",
            questions_and_answers=[
                {"question": 1, "answer": {"a": 1}},
                {"question": None, "answer": [1]},
            ],
        ),
        {"applied"},
        None,
    ),
    ("unknown event", {**BASE, "event": "invitee.teleported"}, {"ignored"}, None),
    ("event name with odd unicode", {**BASE, "event": "invitee.created\u202e"}, {"ignored"}, None),
    ("blank event name", {**BASE, "event": "  "}, {"dead_lettered"}, "bad_envelope"),
    ("null everywhere but uri and email", nulls(BASE, "uri", "email"), {"applied"}, None),
    ("null everywhere", nulls(BASE), {"dead_lettered"}, None),
    (
        "wrong types everywhere",
        env(
            email="types@example.com",
            name=["a"],
            first_name=3.5,
            timezone={"tz": 1},
            scheduled_event=[1, 2],
            tracking="utm",
            rescheduled="maybe",
            no_show=7,
            cancellation="yes",
            created_at=0,
            status=True,
        ),
        {"applied", "dead_lettered"},
        None,
    ),
    (
        "dates that are not dates",
        env(
            email="dates@example.com",
            scheduled_event={**BASE["payload"]["scheduled_event"], "start_time": "soon"},
            created_at="yesterday",
        ),
        {"applied"},
        None,
    ),
    (
        "deeply nested unknown field",
        env(email="deep@example.com", extra=nested(400)),
        {"applied"},
        None,
    ),
    ("huge name", env(email="name@example.com", name="N" * 200_000), {"applied"}, None),
    (
        "control characters",
        env(email="ctl@example.com", name="A\x00B\x1b[31mC\u2028D"),
        {"applied"},
        None,
    ),
    (
        "calendly v1 payload shape",
        {**BASE, "payload": {"invitee": {"email": "v1@example.com"}}},
        {"dead_lettered"},
        "v1_payload",
    ),
    (
        "no-show without a no_show object",
        payloads.with_payload(payloads.no_show_created(email="ns@example.com"), no_show=None),
        {"applied"},
        None,
    ),
    (
        "routing form without answers",
        payloads.routing_form_submission(answers=()),
        {"ignored", "applied", "suppressed"},
        None,
    ),
    ("not json", "{nope", {"dead_lettered"}, "not_json"),
    ("a json array", "[1,2]", {"dead_lettered"}, "bad_envelope"),
    (
        "payload is a list",
        json.dumps({"event": "invitee.created", "payload": []}),
        {"dead_lettered"},
        "bad_envelope",
    ),
]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[Pipeline, RecordingBrevo]]:
    pipe, brevo, services = make_pipeline(tmp_path)
    yield pipe, brevo
    services.close()


def raw(case: dict[str, Any] | str) -> str:
    return case if isinstance(case, str) else payloads.body(case).decode()


@pytest.mark.parametrize(("case", "body", "allowed", "reason"), CASES, ids=[c[0] for c in CASES])
def test_a_strange_payload_is_applied_ignored_or_dead_lettered_with_its_reason(
    pipeline: tuple[Pipeline, RecordingBrevo],
    case: str,
    body: dict[str, Any] | str,
    allowed: set[str],
    reason: str | None,
) -> None:
    pipe, brevo = pipeline
    outcome = pipe.process(raw(body), time.time())
    assert outcome.status in allowed, (case, outcome)
    dead = pipe.ledger.dead_letters(DeadLetterFilter())
    if outcome.status == "dead_lettered":
        [row] = dead
        assert row.reason and row.error, case
        if reason is not None:
            assert row.reason == reason, (case, row.reason, row.error)
        assert row.payload == raw(body)  # kept whole, for a replay after a fix
        assert brevo.events == []
    else:
        assert dead == []
    if outcome.status == "applied":
        assert brevo.upserts, case
        for _email, attributes, _lists, _unlink in brevo.upserts:
            json.dumps(attributes)  # plain JSON values only
        for _name, _email, properties in brevo.events:
            assert all(len(str(v)) <= 1000 for v in properties.values())


def test_unicode_and_plus_addresses_keep_their_identity(
    pipeline: tuple[Pipeline, RecordingBrevo],
) -> None:
    pipe, brevo = pipeline
    pipe.process(payloads.body(env(email="Zoë.Ünïcode@Exämple.com")).decode(), time.time())
    pipe.process(
        payloads.body(
            payloads.invitee_created(
                email="ada+calendly@example.com", invitee_uri=payloads.invitee_uri("E9", "I9")
            )
        ).decode(),
        time.time(),
    )
    emails = [u[0] for u in brevo.upserts]
    assert emails == ["zoë.ünïcode@exämple.com", "ada+calendly@example.com"]


def test_a_batch_of_strange_payloads_all_finish_through_a_real_dramatiq_worker(
    pipeline: tuple[Pipeline, RecordingBrevo],
) -> None:
    pipe, _ = pipeline
    bodies = [raw(c[1]) for c in CASES] * 2  # every case twice: the second is a duplicate
    broker = drain(pipe, [(body, time.time()) for body in bodies], threads=4)
    assert broker.dead_letters == []
    assert isinstance(pipe.ledger, SqlLedger)
    with pipe.ledger.sessions() as s:
        from sqlalchemy import func, select

        from calendly_brevo.db.models import ProcessedEvent

        statuses = dict(
            s.execute(
                select(ProcessedEvent.status, func.count()).group_by(ProcessedEvent.status)
            ).all()
        )
    assert set(statuses) <= {"applied", "ignored", "suppressed", "dead"}
    dead = pipe.ledger.dead_letters(DeadLetterFilter(), limit=1000)
    assert all(row.reason for row in dead)


def test_one_idle_open_connection_does_not_block_the_worker_healthz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import threading

    import httpx

    from tests.conftest import make_settings
    from worker.main import _metrics_app, serve_metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    server = serve_metrics("127.0.0.1", 0, _metrics_app(make_settings(tmp_path), lambda: True))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\n")  # ... and never finishes the request
            answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3.0)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    finally:
        server.shutdown()
        server.server_close()
