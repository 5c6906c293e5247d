"""A rate-limit wait is not a failure: an event held back by Brevo's quota (a 429, or our token
bucket) waits as long as the quota says and is never dead-lettered as ``retries_exhausted`` for
it; real failures still are, and ``worker.max_age_seconds`` still bounds the wait."""

from __future__ import annotations

import time
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker

from calendly_brevo.errors import BrevoTransientError, RateLimited
from calendly_brevo.ledger import DeadLetterFilter
from tests import payloads
from tests.worker.stub_worker import drain
from tests.worker.test_pipeline import memory_pipeline
from worker.actors import backoff_ms
from worker.pipeline import Pipeline

WORKER = {"max_retries": 2, "min_backoff_seconds": 0.01, "max_backoff_seconds": 0.05}


@pytest.fixture
def setup() -> Any:
    return memory_pipeline(worker=WORKER)


def run(pipeline: Pipeline, envelope: dict[str, Any], received_at: float) -> StubBroker:
    return drain(pipeline, [(payloads.body(envelope).decode(), received_at)])


def dead_reasons(pipeline: Pipeline) -> list[str]:
    return [row.reason for row in pipeline.ledger.dead_letters(DeadLetterFilter())]


def test_more_429s_than_max_retries_still_end_applied(setup: Any) -> None:
    pipeline, brevo = setup
    brevo.throttle_upserts = 3 * WORKER["max_retries"]  # six waits against a budget of two
    broker = run(pipeline, payloads.invitee_created(email="held@example.com"), time.time())
    assert brevo.throttle_upserts == 0
    assert [u[0] for u in brevo.upserts] == ["held@example.com"]
    assert [e[0] for e in brevo.events] == ["calendly_invitee_created"]
    assert dead_reasons(pipeline) == [] and broker.dead_letters == []


def test_failures_still_exhaust_the_retries_between_waits(setup: Any) -> None:
    pipeline, brevo = setup
    brevo.throttle_upserts, brevo.fail_upserts = 4, WORKER["max_retries"] + 1
    run(pipeline, payloads.invitee_created(), time.time())
    assert brevo.upserts == []
    assert dead_reasons(pipeline) == ["retries_exhausted"]


def test_a_wait_past_max_age_is_dead_lettered_as_expired(setup: Any) -> None:
    pipeline, brevo = setup
    brevo.throttle_upserts = 1
    received = time.time() - pipeline.settings.worker.max_age_seconds - 1
    run(pipeline, payloads.invitee_created(), received)
    assert brevo.upserts == []
    assert dead_reasons(pipeline) == ["expired"]


def test_a_wait_lasts_as_long_as_the_quota_says_whatever_max_backoff(setup: Any) -> None:
    settings = setup[0].settings  # max_backoff_seconds 0.05
    for exc in (
        BrevoTransientError("429", status=429, delay=60.0),
        RateLimited("other", 36.0),
    ):
        waits = [backoff_ms(0, exc, settings.worker) for _ in range(50)]
        assert exc.delay is not None
        assert all(exc.delay * 1000 <= w <= exc.delay * 1100 for w in waits), waits
    # A failure still backs off within max_backoff_seconds, even with a long hint.
    failure = BrevoTransientError("502", status=502, delay=60.0)
    assert max(backoff_ms(5, failure, settings.worker) for _ in range(50)) <= 50
