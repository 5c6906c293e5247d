"""Concurrent duplicates on real Postgres: threads racing on one event id apply it once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests import payloads
from tests.worker.test_pipeline import make_pipeline

pytestmark = pytest.mark.integration


def test_racing_workers_apply_the_same_event_once(tmp_path: Path, postgres_url: str) -> None:
    pipeline, brevo, services = make_pipeline(tmp_path, postgres_url)
    body = payloads.body(payloads.invitee_created(email="race@example.com")).decode()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def run() -> None:
        barrier.wait()
        outcomes.append(pipeline.process(body, 1.0).status)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 7
    assert len(brevo.events) == 1
    assert len(brevo.upserts) == 1
    services.close()


def test_events_of_one_contact_never_interleave(tmp_path: Path, postgres_url: str) -> None:
    """Under the per-contact lock, Brevo sees one contact's updates strictly one after another."""
    pipeline, brevo, services = make_pipeline(tmp_path, postgres_url)
    active = {"n": 0, "max": 0}
    lock = threading.Lock()
    original = brevo.upsert_contact

    def slow_upsert(*args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            active["n"] += 1
            active["max"] = max(active["max"], active["n"])
        try:
            import time

            time.sleep(0.02)
            return original(*args, **kwargs)
        finally:
            with lock:
                active["n"] -= 1

    brevo.upsert_contact = slow_upsert  # type: ignore[method-assign]
    bodies = [
        payloads.body(
            payloads.invitee_created(
                email="same@example.com", invitee_uri=payloads.invitee_uri(f"E{i}", f"I{i}")
            )
        ).decode()
        for i in range(6)
    ]
    threads = [threading.Thread(target=pipeline.process, args=(b, 1.0)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert active["max"] == 1
    assert len(brevo.upserts) == 6
    services.close()


def test_an_unfinished_claim_is_processed_again(tmp_path: Path, postgres_url: str) -> None:
    """A worker that died after claiming leaves status 'processing': the redelivery applies it."""
    pipeline, brevo, services = make_pipeline(tmp_path, postgres_url)
    env = payloads.invitee_created(email="dead@example.com")
    from calendly_brevo.events import parse_envelope, read_event
    from calendly_brevo.ledger import Arrival

    ident = read_event(parse_envelope(payloads.body(env))).identity
    pipeline.ledger.claim(
        Arrival(
            event_id=ident.event_id,
            event_name=ident.event_name,
            invitee_uri=ident.invitee_uri,
            email=ident.email,
            payload="{}",
            source="webhook",
            received_at=None,
        )
    )
    row = pipeline.ledger.event(ident.event_id)
    assert row is not None and row.status == "processing"
    assert pipeline.process(payloads.body(env).decode(), 1.0).status == "applied"
    assert len(brevo.events) == 1
    services.close()
