"""The bucket's low-priority grant (``try_spare``): background work takes only what live
callers leave, never waits, never queues; the same on every backend."""

from __future__ import annotations

import uuid

from calendly_brevo.config import Bucket
from calendly_brevo.ratelimit.bucket import Schedule
from tests.ratelimit.test_bucket import (
    BackendFactory,
    FakeClock,
    bucket_for,
    bucket_redis_url,
    make_backend,
)

__all__ = ["bucket_redis_url", "make_backend"]  # fixtures


def test_background_takes_only_beyond_the_reserve_and_live_callers_find_it_intact(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock)  # 10/s, burst 10
    taken = 0
    while bucket.try_spare("contacts", keep=4):
        taken += 1
    assert taken == 6
    for _ in range(4):  # the reserve: live callers are served at once
        assert bucket.acquire("contacts", max_wait=5) == 0.0
    assert clock.slept == []
    assert bucket.state()["contacts"]["tokens"] == 0


def test_background_never_takes_a_slot_someone_waits_for_or_during_a_pause(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock, rate=10, burst=2)
    bucket.acquire("contacts", max_wait=5)
    bucket.acquire("contacts", max_wait=5)
    assert not bucket.try_spare("contacts", keep=0)  # none free now: it does not queue
    assert clock.slept == []
    clock.now += 5.0  # the window has passed: both tokens are back
    assert bucket.try_spare("contacts", keep=0)
    bucket.pause("contacts", 1.0)
    assert not bucket.try_spare("contacts", keep=0)
    clock.now += 1.5
    assert bucket.try_spare("contacts", keep=0)
    assert clock.slept == []


def test_sustained_background_leaves_the_reserve_free_at_every_moment(
    make_backend: BackendFactory,
) -> None:
    """The price of the reserve: background work gets ``burst - keep`` tokens per window,
    half the family's rate with half the burst kept (and all of what it gets is spare)."""
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock)  # 10/s, burst 10
    granted: list[float] = []
    for _ in range(400):  # 4 s of a background loop polling every 10 ms
        if bucket.try_spare("contacts", keep=5):
            granted.append(clock.now)
        assert bucket.state()["contacts"]["tokens"] >= 5
        clock.now += 0.01
    window = 1.04  # burst / rate * (1 + margin)
    for first, sixth in zip(granted, granted[5:], strict=False):
        assert sixth - first >= window - 1e-6
    assert len(granted) >= 5 + 5 * 2  # the first burst, and every window after it


def test_every_backend_grants_spare_tokens_as_the_memory_backend_does(
    make_backend: BackendFactory,
) -> None:
    from calendly_brevo.ratelimit import MemoryBackend

    schedule = Schedule.from_bucket(Bucket(rate=7, burst=4), 0.04)
    memory_clock, other_clock = FakeClock(), FakeClock()
    memory, other = MemoryBackend(clock=memory_clock), make_backend(other_clock)
    key = f"test:{uuid.uuid4().hex}"
    for step, gap in enumerate([0, 0, 0.05, 0, 0.3, 0.02, 0, 0.7, 0, 0.1] * 3):
        memory_clock.now += gap
        other_clock.now += gap
        keep = step % 3 - 1  # -1: an ordinary reservation; 0 and 1: spare only
        assert memory.reserve(key, schedule, 0.5, keep) == other.reserve(key, schedule, 0.5, keep)
    assert memory.snapshot(key) == other.snapshot(key)
