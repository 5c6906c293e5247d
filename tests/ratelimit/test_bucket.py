"""The shared token bucket: the same schedule on every backend, and the window guarantee.

Unit tests drive a fake clock through the memory backend, fakeredis (when ``lupa`` is
installed: fakeredis needs it for Lua) and real Redis with an injected clock (integration).
The last test shares one real Redis bucket between threads and processes on the real clock.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from calendly_brevo.config import BrevoSettings, Bucket
from calendly_brevo.errors import RateLimited
from calendly_brevo.ratelimit import (
    FAMILIES,
    Backend,
    MemoryBackend,
    RedisBackend,
    TokenBucket,
    make_token_bucket,
)
from calendly_brevo.ratelimit.bucket import Schedule
from tests.conftest import IN_CI, REDIS_BASE

HAS_LUPA = importlib.util.find_spec("lupa") is not None
# A database of our own, never flushed: other suites flush theirs (15) while this one runs.
BUCKET_REDIS_URL = f"{REDIS_BASE}/13"


@pytest.fixture
def bucket_redis_url() -> Iterator[str]:
    """Real Redis for bucket tests: skips when absent locally, fails when absent in CI."""
    client = redis.Redis.from_url(BUCKET_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except (redis.ConnectionError, OSError) as exc:
        message = f"Redis at {BUCKET_REDIS_URL} is not reachable ({exc})"
        if IN_CI:
            pytest.fail(message + " — CI must provide it")
        pytest.skip(message)
    yield BUCKET_REDIS_URL
    for key in client.scan_iter("test:*"):
        client.delete(key)
    client.close()


class FakeClock:
    """Monotonic seconds that only move when someone sleeps."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


BackendFactory = Callable[[FakeClock], Backend]


def _memory(clock: FakeClock) -> Backend:
    return MemoryBackend(clock=clock)


@pytest.fixture(
    params=[
        "memory",
        pytest.param(
            "fakeredis",
            marks=pytest.mark.skipif(not HAS_LUPA, reason="fakeredis runs Lua only with lupa"),
        ),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def make_backend(request: pytest.FixtureRequest) -> BackendFactory:
    if request.param == "memory":
        return _memory
    if request.param == "fakeredis":
        import fakeredis

        server = fakeredis.FakeRedis()
        return lambda clock: RedisBackend(server, clock=clock)
    client = redis.Redis.from_url(request.getfixturevalue("bucket_redis_url"))
    return lambda clock: RedisBackend(client, clock=clock)


def bucket_for(
    make_backend: BackendFactory, clock: FakeClock, rate: float = 10, burst: int = 10
) -> TokenBucket:
    return TokenBucket(
        make_backend(clock),
        {"contacts": Bucket(rate=rate, burst=burst), "events": Bucket(rate=rate, burst=burst)},
        key_prefix=f"test:{uuid.uuid4().hex}",
        margin=0.04,
        clock=clock,
        sleep=clock.sleep,
    )


def grant_times(
    bucket: TokenBucket, clock: FakeClock, n: int, family: str = "contacts"
) -> list[float]:
    times = []
    for _ in range(n):
        bucket.acquire(family, max_wait=60)
        times.append(round(clock.now - 1_000.0, 6))
    return times


def test_an_idle_bucket_grants_its_whole_burst_at_once(make_backend: BackendFactory) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock)
    assert grant_times(bucket, clock, 10) == [0.0] * 10
    assert clock.slept == []


def test_after_the_burst_callers_wait_a_stretched_window_then_go_one_spacing_apart(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock)
    times = grant_times(bucket, clock, 25)
    # W = burst / rate * (1 + margin) = 1.04 s; spacing = W / burst = 0.104 s.
    assert times[10] == pytest.approx(1.04)
    steps = [b - a for a, b in itertools.pairwise(times[10:])]
    assert steps == pytest.approx([0.104] * 14, abs=2e-6)


def test_the_sustained_rate_is_the_limit_divided_by_one_plus_the_margin(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock, rate=50, burst=50)
    times = grant_times(bucket, clock, 300)
    rate = (300 - 51) / (times[-1] - times[50])
    assert rate == pytest.approx(50 / 1.04, rel=1e-3)


def test_no_fixed_one_second_window_gets_more_than_the_limit_under_saturation(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock(start=1_000.37)
    bucket = bucket_for(make_backend, clock)
    times = []
    for _ in range(120):
        bucket.acquire("contacts", max_wait=60)
        times.append(clock.now)
    per_window = collections.Counter(int(t) for t in times)
    assert max(per_window.values()) <= 10


def test_a_wait_longer_than_max_wait_raises_rate_limited_and_consumes_nothing(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock, rate=1, burst=1)
    bucket.acquire("contacts", max_wait=0)
    with pytest.raises(RateLimited) as caught:
        bucket.acquire("contacts", max_wait=0.5)
    assert caught.value.family == "contacts"
    assert caught.value.delay == pytest.approx(1.04)
    assert bucket.state()["contacts"]["booked_ahead"] == 0
    clock.now += 1.04
    assert bucket.acquire("contacts", max_wait=0) == 0


def test_a_pause_holds_every_grant_of_the_family_until_it_ends(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock)
    bucket.pause("contacts", 2.5)
    bucket.pause("contacts", 1.0)  # a shorter pause never shortens the longer one
    assert bucket.acquire("events", max_wait=0) == 0  # other families are not held
    with pytest.raises(RateLimited):
        bucket.acquire("contacts", max_wait=2)
    assert bucket.acquire("contacts", max_wait=5) == pytest.approx(2.5)


def test_callers_queued_behind_a_pause_leave_one_spacing_apart_not_all_at_once(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    backend = make_backend(clock)
    schedule = Schedule.from_bucket(Bucket(rate=10, burst=10), 0.04)
    key = f"test:{uuid.uuid4().hex}"
    backend.pause(key, 2.0)
    waits = [backend.reserve(key, schedule, max_wait=10)[1] for _ in range(3)]
    assert waits == pytest.approx([2.0, 2.104, 2.208], abs=2e-6)


def test_state_reports_tokens_queue_next_free_slot_and_pause(
    make_backend: BackendFactory,
) -> None:
    clock = FakeClock()
    bucket = bucket_for(make_backend, clock)
    fresh = bucket.state()
    assert fresh["contacts"] == {
        "rate": 10.0,
        "burst": 10,
        "tokens": 10,
        "booked_ahead": 0.0,
        "next_free_in": 0.0,
        "paused_for": 0.0,
    }
    grant_times(bucket, clock, 4)
    assert bucket.state()["contacts"]["tokens"] == 6
    grant_times(bucket, clock, 6)
    after = bucket.state()["contacts"]
    assert after["tokens"] == 0
    assert after["next_free_in"] == pytest.approx(1.04)
    bucket.pause("events", 3)
    assert bucket.state()["events"]["paused_for"] == pytest.approx(3)
    assert bucket.state()["events"]["tokens"] == 0


def test_a_caller_that_wakes_too_late_forfeits_its_slot_and_queues_again() -> None:
    clock = FakeClock()
    oversleep = [0.5]

    def sleepy(seconds: float) -> None:
        clock.sleep(seconds + (oversleep.pop() if oversleep else 0))

    backend = MemoryBackend(clock=clock)
    bucket = TokenBucket(backend, {"contacts": Bucket(rate=10, burst=1)}, clock=clock, sleep=sleepy)
    bucket.acquire("contacts", max_wait=5)
    waited = bucket.acquire("contacts", max_wait=5)
    # The slot at 0.104 s was missed by 0.5 s (tolerance 2 ms): it is dropped and, the bucket
    # being free again by then, a fresh slot is granted at once.
    assert waited == pytest.approx(0.604, abs=1e-6)
    assert backend.snapshot(bucket._key("contacts")).last == round(1_000.604 * 1e6)


class StarvedClock(FakeClock):
    """Every look at the clock costs 50 ms: a CPU so busy that every caller wakes late."""

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


def test_forfeits_stop_at_max_wait_instead_of_spinning() -> None:
    clock = StarvedClock()
    bucket = TokenBucket(
        MemoryBackend(clock=clock),
        {"contacts": Bucket(rate=10, burst=1)},
        clock=clock,
        sleep=clock.sleep,
    )
    with pytest.raises(RateLimited):
        bucket.acquire("contacts", max_wait=1)


def test_an_unknown_family_is_a_key_error() -> None:
    bucket = TokenBucket(MemoryBackend(), {"contacts": Bucket(rate=1, burst=1)})
    with pytest.raises(KeyError, match="events"):
        bucket.acquire("events", max_wait=1)


def test_make_token_bucket_takes_every_family_from_the_plan_or_its_override() -> None:
    settings_ = BrevoSettings(plan="advanced", rate_limits={"events": Bucket(rate=5, burst=2)})
    bucket = make_token_bucket(settings_)
    assert isinstance(bucket.backend, MemoryBackend)
    assert set(bucket.buckets) == set(FAMILIES)
    assert bucket.buckets["contacts"] == Bucket(rate=20, burst=20)
    assert bucket.buckets["events"] == Bucket(rate=5, burst=2)
    assert bucket.key == "calendly_brevo:bucket"


def test_make_token_bucket_keeps_the_configured_jitter_allowance_free() -> None:
    # After a burst of 10 at 10/s the next grant waits one window, (1 + margin) seconds.
    for margin in (0.04, 0.2):
        bucket = make_token_bucket(BrevoSettings(rate_margin=margin))
        for _ in range(10):
            assert bucket.acquire("contacts", max_wait=1) < 0.01
        assert bucket.state()["contacts"]["next_free_in"] == pytest.approx(1 + margin, abs=0.02)


@settings(max_examples=60, deadline=None)
@given(
    burst=st.integers(min_value=1, max_value=6),
    gaps=st.lists(st.floats(min_value=0, max_value=0.6), min_size=1, max_size=60),
    pauses=st.lists(st.booleans(), min_size=60, max_size=60),
    margin=st.sampled_from([0.0, 0.04, 0.15, 0.5]),  # brevo.rate_margin's range and default
)
def test_any_arrival_pattern_keeps_burst_per_window_first_come_first_served(
    burst: int, gaps: list[float], pauses: list[bool], margin: float
) -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    schedule = Schedule.from_bucket(Bucket(rate=10, burst=burst), margin)
    slots = []
    for gap, pause in zip(gaps, pauses, strict=False):
        clock.now += gap
        if pause:
            backend.pause("k", 0.3)
        granted, wait = backend.reserve("k", schedule, max_wait=1e9)
        assert granted
        slots.append(clock.now + wait)
    assert slots == sorted(slots)  # whoever asks first is served first
    window = schedule.window_us / 1e6
    for first, last in zip(slots, slots[burst:], strict=False):
        assert last - first >= window - 1e-6


def test_every_backend_gives_the_memory_backends_schedule_to_the_microsecond(
    make_backend: BackendFactory,
) -> None:
    schedule = Schedule.from_bucket(Bucket(rate=7, burst=3), 0.04)
    memory_clock, other_clock = FakeClock(), FakeClock()
    memory = MemoryBackend(clock=memory_clock)
    other = make_backend(other_clock)
    key = f"test:{uuid.uuid4().hex}"
    for step, gap in enumerate([0, 0, 0.01, 0, 0.2, 0.05, 0, 0.9, 0, 0, 0, 0.3] * 3):
        memory_clock.now += gap
        other_clock.now += gap
        if step % 7 == 3:
            memory.pause(key, 0.25)
            other.pause(key, 0.25)
        assert memory.reserve(key, schedule, 0.5) == other.reserve(key, schedule, 0.5)
    assert memory.snapshot(key) == other.snapshot(key)


@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=0.5),  # time since the step before
            st.integers(min_value=1, max_value=8),  # reservations asked for together
            st.booleans(),  # a pause first
        ),
        min_size=1,
        max_size=12,
    ),
    max_wait=st.sampled_from([0.0, 0.2, 1.0, 60.0]),
)
@settings(max_examples=60, deadline=None)
def test_reserving_many_at_once_is_exactly_that_many_reservations_one_after_another(
    steps: list[tuple[float, int, bool]], max_wait: float
) -> None:
    """The group pass's tokens (``reserve_many``) keep the bucket's guarantee because they are
    the very slots as many single callers queued in a row would get, on the Lua script and on
    the memory backend, stopping at the first one too far away."""
    schedule = Schedule.from_bucket(Bucket(rate=10, burst=3), 0.04)
    clocks = [FakeClock(), FakeClock()]
    single, many = MemoryBackend(clock=clocks[0]), MemoryBackend(clock=clocks[1])
    backends: list[Backend] = [many]
    if HAS_LUPA:
        import fakeredis

        clocks.append(FakeClock())
        backends.append(RedisBackend(fakeredis.FakeRedis(), clock=clocks[-1]))
    for gap, count, pause in steps:
        for clock in clocks:
            clock.now += gap
        if pause:
            for backend in (single, *backends):
                backend.pause("k", 0.3)
        expected: list[float] = []
        while len(expected) < count:
            granted, wait = single.reserve("k", schedule, max_wait)
            if not granted:
                break
            expected.append(wait)
        for backend in backends:
            assert backend.reserve_many("k", schedule, max_wait, count) == pytest.approx(
                expected, abs=1e-6
            )
    for backend in backends:
        assert backend.snapshot("k").virtual == single.snapshot("k").virtual


@pytest.mark.integration
def test_redis_reserves_many_as_the_memory_backend_does(bucket_redis_url: str) -> None:
    schedule = Schedule.from_bucket(Bucket(rate=7, burst=3), 0.04)
    memory_clock, redis_clock = FakeClock(), FakeClock()
    memory = MemoryBackend(clock=memory_clock)
    real = RedisBackend(redis.Redis.from_url(bucket_redis_url), clock=redis_clock)
    key = f"test:{uuid.uuid4().hex}"
    for gap, count in [(0, 5), (0.01, 2), (0.3, 1), (0, 9), (1.5, 4), (0, 0)]:
        memory_clock.now += gap
        redis_clock.now += gap
        assert real.reserve_many(key, schedule, 0.8, count) == memory.reserve_many(
            key, schedule, 0.8, count
        )
    assert real.snapshot(key) == memory.snapshot(key)


def test_tokens_reserved_together_are_spent_at_their_slots_and_a_late_one_queues_again() -> None:
    clock = FakeClock()
    bucket = bucket_for(_memory, clock, rate=10, burst=2)
    dues = bucket.acquire_many("contacts", 5, max_wait=0.35)
    # Two at once (the burst), then one spacing (0.104 s) apart; the fifth (0.416 s) is more
    # than max_wait away, so it is not reserved.
    assert [round(due - 1_000.0, 3) for due in dues] == [0.0, 0.0, 0.208, 0.312]
    for due in dues[:3]:
        bucket.spend("contacts", due, max_wait=1)
        assert clock.now == pytest.approx(due)
    clock.now = dues[3] + 0.3  # the fourth wakes far past its slot: forfeited, it queues
    bucket.spend("contacts", dues[3], max_wait=1)
    last = bucket.backend.snapshot(bucket._key("contacts")).last / 1e6
    assert last == pytest.approx(dues[3] + 0.3)  # a new slot, now: not the forfeited one


# -- real Redis, real clock, several threads and processes ------------------------------------
RATE = 50


def _warm(seconds: float) -> None:
    time.sleep(seconds)


def _hammer(url: str, prefix: str, start_at: float, end_at: float, threads: int) -> list[float]:
    """Acquire as fast as the bucket allows from ``threads`` threads; return grant times."""
    client = redis.Redis.from_url(url)
    bucket = TokenBucket(
        RedisBackend(client), {"contacts": Bucket(rate=RATE, burst=RATE)}, key_prefix=prefix
    )
    granted: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        while (now := time.time()) < start_at:
            time.sleep(min(0.05, start_at - now))
        while time.time() < end_at:
            try:
                bucket.acquire("contacts", max_wait=2)
            except RateLimited:
                continue
            stamp = time.time()
            if stamp < end_at:
                with lock:
                    granted.append(stamp)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    client.close()
    return granted


@pytest.mark.integration
def test_threads_and_processes_sharing_redis_never_exceed_the_limit_in_any_second(
    bucket_redis_url: str,
) -> None:
    redis_url = bucket_redis_url
    prefix = f"test:{uuid.uuid4().hex}"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_warm, [0.3, 0.3], chunksize=1)  # both children up, this module imported
        start_at = float(int(time.time()) + 1) + 0.3
        end_at = start_at + 3.5
        results = [
            pool.apply_async(_hammer, (redis_url, prefix, start_at, end_at, 2)) for _ in range(2)
        ]
        here = _hammer(redis_url, prefix, start_at, end_at, 3)
        times = sorted(here + [t for r in results for t in r.get(timeout=30)])

    per_second = sorted(collections.Counter(int(t) for t in times).items())
    assert max(n for _, n in per_second) <= RATE, per_second
    # Skip the opening burst; the steady state must deliver at least 95 % of the limit.
    steady = times[RATE:]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0])
    assert achieved >= 0.95 * RATE, (achieved, per_second)
