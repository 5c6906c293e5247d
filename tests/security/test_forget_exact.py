"""``forget`` matches one person exactly: normalised like the worker's key, no pattern match."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from calendly_brevo.db.models import DeadLetter, Invitee
from calendly_brevo.ledger import Failure, Ledger
from calendly_brevo.lifecycle import forget
from tests import payloads
from tests.worker.test_pipeline import make_pipeline


def _dead_letter(ledger: Ledger, email: str) -> None:
    ledger.dead_letter(
        Failure(
            event_id=None,
            event_name="invitee.created",
            reason="unmappable",
            error="bad shape",
            attempts=1,
            payload=json.dumps({"event": "invitee.created", "payload": {"email": email}}),
            source="webhook",
            received_at=None,
        )
    )


def _left(services: object) -> list[str]:
    with services.sessions() as s:  # type: ignore[attr-defined]
        return sorted(
            json.loads(p)["payload"]["email"] for p in s.scalars(select(DeadLetter.payload))
        )


def test_forget_never_removes_another_persons_dead_letters(tmp_path: Path) -> None:
    _pipeline, _brevo, services = make_pipeline(tmp_path)
    for email in ("a@example.com", "ba@example.com", "a@example.com.evil.org", "axb@example.com"):
        _dead_letter(services.ledger, email)
    assert forget(services.sessions, "A@example.com").dead_letters == 1
    assert forget(services.sessions, "a_b@example.com").dead_letters == 0  # _ is no wildcard
    assert forget(services.sessions, "%@example.com").dead_letters == 0
    assert _left(services) == ["a@example.com.evil.org", "axb@example.com", "ba@example.com"]
    services.close()


def test_forget_normalises_unicode_like_the_worker(tmp_path: Path) -> None:
    pipeline, _brevo, services = make_pipeline(tmp_path)
    pipeline.process(
        payloads.body(payloads.invitee_created(email="José@Example.com")).decode(), 1.0
    )
    _dead_letter(services.ledger, "JOSÉ@example.com")
    decomposed = "Jose\u0301@EXAMPLE.com"  # NFD: e + combining acute accent
    result = forget(services.sessions, decomposed)
    assert (result.invitees, result.dead_letters) == (1, 1)
    with services.sessions() as s:
        assert s.scalars(select(Invitee)).all() == []
    assert _left(services) == []
    services.close()


def test_forget_removes_the_persons_waiting_messages_from_the_embedded_queue(
    tmp_path: Path,
) -> None:
    from calendly_brevo.queue_erasure import SqliteWaiting
    from calendly_brevo.queueing import QUEUE_NAME, SqliteEnqueuer, SqliteQueue

    _pipeline, _brevo, services = make_pipeline(tmp_path)
    queue = SqliteQueue(tmp_path / "queue.db")
    enqueuer = SqliteEnqueuer(queue)
    held = payloads.invitee_created(
        email="JOSÉ@example.com", invitee_uri=payloads.invitee_uri("H", "1")
    )
    enqueuer.enqueue(payloads.body(held).decode(), received_at=1.0, source="webhook")
    assert queue.take(QUEUE_NAME, now_ms=2**62) is not None  # a worker holds it now
    for email in ("José@example.com", "jose@example.com", "other@example.com"):
        body = payloads.body(payloads.invitee_created(email=email)).decode()
        enqueuer.enqueue(body, received_at=1.0, source="webhook")
    queue.put(QUEUE_NAME, "not-json", b"\xff garbage")
    result = forget(services.sessions, "Jose\u0301@EXAMPLE.com", SqliteWaiting(queue))
    assert (result.queued, result.held) == (1, 1)
    assert queue.count(QUEUE_NAME) == 3  # jose@ (no accent), other@ and the garbage stay
    assert queue.count(QUEUE_NAME, "taken") == 1  # left to its worker
    queue.close()
    services.close()
