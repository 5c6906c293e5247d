"""``sync.auto_resync``: the background sweep brings stale contacts to Brevo on spare bucket
capacity only, once per mapping, one runner per deployment, and logs the stale count once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from calendly_brevo.config import Bucket, Settings
from calendly_brevo.ledger.memory import MemoryLedger
from calendly_brevo.pushed import mapping_fingerprint
from calendly_brevo.ratelimit import MemoryBackend, TokenBucket
from calendly_brevo.ratelimit.spare import SpareBucket
from tests import payloads
from tests.ratelimit.test_bucket import FakeClock
from tests.worker.fakes import RecordingBrevo
from worker import auto_resync as ar
from worker.auto_resync import DONE, AutoResync, LocalCoordination, RedisCoordination
from worker.pipeline import Pipeline

MOVED: dict[str, Any] = {
    "connectors": {"calendly": {"event_mapping": {"discovery_call": {"list_id": 12}}}}
}


def stored(n: int, *, dry: bool = True) -> MemoryLedger:
    """``n`` bookings received during a dry run (or pushed live, ``dry=False``)."""
    ledger = MemoryLedger()
    pipeline = Pipeline(payloads.settings(), ledger, RecordingBrevo(dry_run=dry))
    for i in range(n):
        env = payloads.invitee_created(
            email=f"p{i:03d}@example.com", invitee_uri=payloads.invitee_uri(f"E{i}", f"I{i}")
        )
        pipeline.process(payloads.body(env).decode(), 1.0)
    return ledger


class Metered(RecordingBrevo):
    """A Brevo whose every contact call takes a token of ``bucket`` first, as the client does."""

    def __init__(self, bucket: TokenBucket) -> None:
        super().__init__()
        self.bucket = bucket

    def upsert_contact(self, email: str, attributes: dict[str, Any], *a: Any, **k: Any) -> Any:
        self.bucket.acquire("contacts", 5.0)
        return super().upsert_contact(email, attributes, *a, **k)


def runner(ledger: MemoryLedger, brevo: Any, **kw: Any) -> AutoResync:
    coordination = kw.pop("coordination", None) or LocalCoordination()
    return AutoResync(ledger, payloads.settings(**kw), brevo, coordination)


def test_a_sweep_brings_a_dry_runs_contacts_to_brevo_once_and_sends_no_event() -> None:
    ledger, brevo = stored(5), RecordingBrevo()
    run = runner(ledger, brevo)
    first = run.run_once()
    assert (first.stopped, first.checked, first.changed) == ("done", 5, 5)
    assert len(brevo.contacts) == 5 and brevo.events == []
    assert run.coordination.cursor(run.fingerprint) == DONE
    again = run.run_once()
    assert (again.checked, len(brevo.upserts)) == (0, 5)


def test_live_events_keep_their_reserve_and_the_sweep_resumes_where_it_stopped() -> None:
    clock = FakeClock()
    shared = TokenBucket(
        MemoryBackend(clock=clock),
        {"contacts": Bucket(rate=10, burst=10)},
        clock=clock,
        sleep=clock.sleep,
    )
    spare = SpareBucket(shared)  # keeps 5 of 10 for live events
    ledger, brevo = stored(12), Metered(spare)
    run = runner(ledger, brevo)
    run.clock = clock

    first = run.run_once()
    assert (first.stopped, first.changed) == ("spare", 6)  # 5 pushed, the 6th found no token
    assert len(brevo.upserts) == 5
    assert shared.state()["contacts"]["tokens"] == 5
    for _ in range(5):  # live events: served at once
        assert shared.acquire("contacts", max_wait=5) == 0.0
    assert run.run_once().stopped == "spare" and len(brevo.upserts) == 5  # nothing spare
    assert clock.slept == []

    while True:
        before = len(brevo.upserts)
        if run.run_once().stopped == "done":
            break
        if len(brevo.upserts) > before:  # it took tokens: only down to the reserve
            assert shared.state()["contacts"]["tokens"] == 5
        clock.now += 0.1
    assert sorted(brevo.contacts) == sorted(ledger.contacts())
    assert len({u[0] for u in brevo.upserts}) == 12  # each contact pushed once


def test_a_changed_mapping_is_logged_once_with_the_stale_count() -> None:
    ledger = stored(3, dry=False)
    with capture_logs() as logs:
        runner(ledger, RecordingBrevo(), **MOVED).announce()
        runner(ledger, RecordingBrevo()).announce()
    changed = [e for e in logs if e["event"] == "mapping_changed"]
    assert len(changed) == 1 and changed[0]["stale_contacts"] == 3
    assert "calendly-brevo resync" in changed[0]["fix"]
    brevo = RecordingBrevo()
    assert runner(ledger, brevo, **MOVED).run_once().changed == 3
    assert {c: lists for c, lists in brevo.lists.items()} == {c: {12} for c in ledger.contacts()}


def test_auto_resync_does_not_change_the_mapping_fingerprint() -> None:
    on = payloads.settings(connectors={"calendly": {"sync": {"auto_resync": True}}})
    assert mapping_fingerprint(on.rules) == mapping_fingerprint(payloads.settings().rules)


@pytest.fixture
def shared_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.integration
def test_one_runner_per_deployment_and_an_older_mapping_stands_down(
    shared_redis: redis.Redis,
) -> None:
    prefix = f"test:auto:{uuid.uuid4().hex}"
    ledger = stored(6)
    a_brevo, b_brevo = RecordingBrevo(), RecordingBrevo()
    a = runner(ledger, a_brevo, coordination=RedisCoordination(shared_redis, prefix))
    b = runner(ledger, b_brevo, coordination=RedisCoordination(shared_redis, prefix))
    clock = FakeClock()
    a.clock = clock

    a.announce()
    b.announce()
    ticks = iter(range(10**6))
    a.clock = lambda: float(next(ticks)) * ar.PASS_SECONDS / 3.5  # 3 contacts per pass
    first = a.run_once()
    assert (first.stopped, len(a_brevo.upserts)) == ("time", 3)
    assert b.run_once().stopped == "not_leader"  # a holds the lock
    shared_redis.delete(f"{prefix}:lock")  # a died: its lock expired
    rest = b.run_once()
    assert (rest.stopped, rest.checked, len(b_brevo.upserts)) == ("done", 3, 3)
    assert sorted(a_brevo.contacts) + sorted(b_brevo.contacts) == ledger.contacts()

    old = runner(
        ledger, RecordingBrevo(), coordination=RedisCoordination(shared_redis, prefix), **MOVED
    )
    newest = runner(ledger, RecordingBrevo(), coordination=RedisCoordination(shared_redis, prefix))
    old.announce()
    newest.announce()  # a pod with today's config started last
    shared_redis.delete(f"{prefix}:lock")
    assert old.run_once().stopped == "not_leader"


def test_the_runners_brevo_client_draws_spare_tokens_of_the_processs_bucket(
    settings: Settings,
) -> None:
    from calendly_brevo.bootstrap import Services
    from worker.runtime import make_limiter

    services = Services(settings)
    try:
        built = ar.build(services)
        limiter = built.brevo._limiter  # type: ignore[attr-defined]
        assert isinstance(limiter, SpareBucket)
        assert limiter.backend is make_limiter(services).backend
    finally:
        services.close()
