"""The shared token bucket that keeps every worker under Brevo's rate limits.

Dramatiq's rate-limiter shape: a ``backend`` (Redis for every worker process on any host, or
memory for the embedded single process), a ``key`` prefix, and :meth:`TokenBucket.acquire`.
One bucket per Brevo limit family (``contacts``, ``events``, ``other``), each built from a
:class:`~calendly_brevo.config.Bucket` ``(rate R, burst B)``.

How it grants (a reservation scheme: every grant reserves a slot in time; callers sleep until
their slot, so nobody polls and nobody stampedes when a window opens):

* **Window.** With ``W = (B / R) * (1 + margin)``, at most ``B`` slots fall in any interval of
  length ``W``, wherever it starts. Brevo counts fixed windows of ``B / R`` seconds (10 per
  second on /contacts); since any such window lies inside a ``W``-long interval, it sees at most
  ``B`` of our requests even when a request reaches Brevo up to ``margin * B / R`` seconds later
  than its neighbours (40 ms at 10/s and the default ``margin``, ``brevo.rate_margin``: 0.04).
  That allowance is the price of the guarantee: the sustained rate is ``R / (1 + margin)``, 96 %
  of the limit.
* **Burst.** An idle bucket grants up to ``B`` requests at once (``doctor``'s handful of calls
  on the 100-per-hour family does not wait). Each grant also books a *virtual* slot, one
  ``spacing = W / B`` after the previous virtual slot, and the window rule counts virtual
  slots: after a burst, credit comes back one token per ``spacing`` (starting one window after
  the burst), so a burst is never repeated under sustained demand.
* **Queue.** A caller who must wait is queued first come, first served, one ``spacing`` after
  the last reservation. Under sustained demand requests go out evenly, one every ``spacing``.
* **Pause.** :meth:`TokenBucket.pause` (Brevo answered 429, or said ``remaining: 0``) holds
  every new grant of the family until the pause ends, for every process sharing the backend;
  the callers queued behind it then leave one ``spacing`` apart.
* **Spare capacity.** :meth:`TokenBucket.try_spare` is the low-priority grant of background
  work (``sync.auto_resync``): a token only if one is free *now* (nobody queued, no pause) and
  more than ``keep`` would stay free; it never waits and never queues, so a live caller never
  waits behind it while ``keep`` tokens last. What it takes still counts in the window: a live
  burst larger than ``keep`` right after it waits for the rest.
* **Late wakers.** A caller that wakes more than ``tolerance = margin * B / R / 2`` after its
  slot (a GC pause, a starved CPU) forfeits it and queues again, so its own lateness cannot eat
  the whole allowance. A forfeited slot is simply unused: safe, slightly slower.

Weak spots, stated plainly: slots already reserved are not recalled by a pause (at most one
per waiting caller goes out during it); the Redis backend uses the server's wall clock
(``TIME``), so a backwards clock step makes callers wait longer and a forward step can let one
early burst through; a ``burst`` larger than Brevo's per-window limit voids the guarantee;
requests that take longer than ``tolerance`` to get from the slot to Brevo (slow DNS, a proxy)
are outside it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypedDict

import redis

from calendly_brevo.config import Bucket
from calendly_brevo.config.brevo import DEFAULT_RATE_MARGIN
from calendly_brevo.errors import RateLimited, TransientError
from calendly_brevo.metrics import RATELIMIT_WAIT_SECONDS

#: Brevo's limit families: /contacts*, POST /events, everything else.
FAMILIES = ("contacts", "events", "other")
DEFAULT_KEY_PREFIX = "calendly_brevo:bucket"
US = 1_000_000
LUA = Path(__file__).with_name("bucket.lua")


@dataclass(frozen=True)
class Schedule:
    """A :class:`Bucket` turned into the numbers the backends work with (microseconds)."""

    burst: int
    window_us: int
    spacing_us: int
    tolerance: float

    @classmethod
    def from_bucket(cls, bucket: Bucket, margin: float) -> Schedule:
        period = bucket.burst / bucket.rate
        window = period * (1 + margin)
        return cls(
            burst=bucket.burst,
            window_us=round(window * US),
            spacing_us=round(window * US / bucket.burst),
            tolerance=period * margin / 2,
        )


class FamilyState(TypedDict):
    """One family's bucket as :meth:`TokenBucket.state` reports it (seconds, relative to now)."""

    rate: float
    burst: int
    tokens: int  # grants available right now without waiting
    booked_ahead: float  # seconds until the last reservation already made falls due
    next_free_in: float  # seconds until the next caller would be served
    paused_for: float  # seconds left of a pause (0: not paused)


class Backend(Protocol):
    """Where the reservations live. Both implementations run :func:`next_slot` atomically."""

    def reserve(
        self, key: str, schedule: Schedule, max_wait: float, keep: int = -1
    ) -> tuple[bool, float]:
        """Reserve the next slot if it is at most ``max_wait`` away: ``(granted, wait)``. With
        ``keep >= 0``: only a slot free now, and only while more than ``keep`` tokens are."""
        ...

    def reserve_many(
        self, key: str, schedule: Schedule, max_wait: float, count: int
    ) -> list[float]:
        """Up to ``count`` ordinary reservations in one atomic step, exactly as ``count`` calls
        of :meth:`reserve` would make them, stopping at the first refused: the waits of those
        granted."""
        ...

    def pause(self, key: str, seconds: float) -> None: ...

    def snapshot(self, key: str) -> Snapshot: ...


@dataclass(frozen=True)
class Snapshot:
    """A family's raw state in microseconds: ``virtual`` holds the last ``burst`` virtual slots."""

    now: int
    paused: int
    last: int
    virtual: tuple[int, ...]


def next_slot(
    now: int, virtual: Sequence[int], last: int, paused: int, schedule: Schedule
) -> tuple[int, int]:
    """``(slot, virtual slot)`` of the next caller, in microseconds. bucket.lua mirrors it."""
    slot = now
    if len(virtual) >= schedule.burst:
        slot = max(slot, virtual[-schedule.burst] + schedule.window_us)
    slot = max(slot, paused)
    if slot > now or last > now:
        slot = max(slot, last + schedule.spacing_us)
    booked = max(slot, virtual[-1] + schedule.spacing_us) if virtual else slot
    return slot, booked


def free_tokens(now: int, virtual: Sequence[int], schedule: Schedule) -> int:
    """Grants available at ``now`` without waiting, when the next slot is ``now``: the burst
    less the virtual slots still inside the window. bucket.lua mirrors it."""
    aged = sum(1 for v in virtual if v + schedule.window_us <= now)
    return schedule.burst - len(virtual) + aged


def spare_refused(
    now: int, slot: int, virtual: Sequence[int], schedule: Schedule, keep: int
) -> bool:
    """Whether a low-priority grant (``keep >= 0``) is refused: not free now, or too few left."""
    return keep >= 0 and (slot > now or free_tokens(now, virtual, schedule) <= keep)


class MemoryBackend:
    """In-process reservations, thread-safe: the embedded single-process mode."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._virtual: dict[str, deque[int]] = {}
        self._last: dict[str, int] = {}
        self._paused: dict[str, int] = {}

    def _now(self) -> int:
        return round(self._clock() * US)

    def reserve(
        self, key: str, schedule: Schedule, max_wait: float, keep: int = -1
    ) -> tuple[bool, float]:
        with self._lock:
            return self._reserve(self._now(), key, schedule, max_wait, keep)

    def reserve_many(
        self, key: str, schedule: Schedule, max_wait: float, count: int
    ) -> list[float]:
        waits: list[float] = []
        with self._lock:
            now = self._now()
            while len(waits) < count:
                granted, wait = self._reserve(now, key, schedule, max_wait, -1)
                if not granted:
                    break
                waits.append(wait)
        return waits

    def _reserve(
        self, now: int, key: str, schedule: Schedule, max_wait: float, keep: int
    ) -> tuple[bool, float]:
        virtual = self._virtual.get(key)
        if virtual is None or virtual.maxlen != schedule.burst:
            virtual = self._virtual[key] = deque(virtual or (), maxlen=schedule.burst)
        last = self._last.get(key, 0)
        slot, booked = next_slot(now, virtual, last, self._paused.get(key, 0), schedule)
        wait = slot - now
        if wait > math.floor(max_wait * US) or spare_refused(now, slot, virtual, schedule, keep):
            return False, wait / US
        virtual.append(booked)
        self._last[key] = slot
        return True, wait / US

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._now() + round(seconds * US)
            self._paused[key] = max(self._paused.get(key, 0), until)

    def snapshot(self, key: str) -> Snapshot:
        with self._lock:
            return Snapshot(
                self._now(),
                self._paused.get(key, 0),
                self._last.get(key, 0),
                tuple(self._virtual.get(key, ())),
            )


def _reserve_args(schedule: Schedule, max_wait: float) -> tuple[int, int, int, int]:
    """bucket.lua's ARGV[3..6] for ``reserve`` and ``reserve_many``."""
    return schedule.burst, schedule.window_us, schedule.spacing_us, math.floor(max_wait * US)


class RedisBackend:
    """Reservations in Redis, shared by every process; one atomic Lua call per operation.

    ``clock`` replaces the server's ``TIME`` (tests only); leave it ``None`` in production so
    processes on different hosts agree on one clock.
    """

    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self._clock = clock
        self._script = client.register_script(LUA.read_text(encoding="utf-8"))

    def _call(self, key: str, mode: str, *args: int) -> list[int] | int:
        now = "" if self._clock is None else str(round(self._clock() * US))
        try:
            reply: list[int] | int = self._script(
                keys=[key, f"{key}:meta"], args=[mode, now, *args]
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise TransientError(f"token bucket unavailable: {exc}", delay=1.0) from exc
        return reply

    def reserve(
        self, key: str, schedule: Schedule, max_wait: float, keep: int = -1
    ) -> tuple[bool, float]:
        reply = self._call(key, "reserve", *_reserve_args(schedule, max_wait), keep)
        assert isinstance(reply, list)
        return bool(reply[0]), int(reply[1]) / US

    def reserve_many(
        self, key: str, schedule: Schedule, max_wait: float, count: int
    ) -> list[float]:
        reply = self._call(key, "reserve_many", *_reserve_args(schedule, max_wait), count)
        assert isinstance(reply, list)
        return [int(wait) / US for wait in reply]

    def pause(self, key: str, seconds: float) -> None:
        self._call(key, "pause", round(seconds * US))

    def snapshot(self, key: str) -> Snapshot:
        reply = self._call(key, "state")
        assert isinstance(reply, list)
        now, paused, last, *virtual = (int(v) for v in reply)
        return Snapshot(now, paused, last, tuple(virtual))


class TokenBucket:
    """One reservation bucket per Brevo limit family, on a shared backend.

    ``acquire(family, max_wait)`` blocks until the caller's slot and returns the seconds it
    waited, or raises :class:`~calendly_brevo.errors.RateLimited` (consuming nothing) when the
    slot is more than ``max_wait`` seconds away. See the module docstring for the guarantee.
    """

    def __init__(
        self,
        backend: Backend,
        buckets: Mapping[str, Bucket],
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        margin: float = DEFAULT_RATE_MARGIN,  # brevo.rate_margin's default
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 <= margin < 1:
            raise ValueError("margin is a fraction in [0, 1)")
        self.backend = backend
        self.key = key_prefix
        self.buckets = dict(buckets)
        self.margin = margin
        self._schedules = {f: Schedule.from_bucket(b, margin) for f, b in self.buckets.items()}
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"TokenBucket({type(self.backend).__name__}, key={self.key!r}, {self.buckets!r})"

    def _key(self, family: str) -> str:
        # The braces are a Redis Cluster hash tag: a family's two keys share one slot.
        return f"{self.key}:{{{family}}}"

    def _schedule(self, family: str) -> Schedule:
        try:
            return self._schedules[family]
        except KeyError:
            known = sorted(self._schedules)
            raise KeyError(f"no bucket for family {family!r}; have {known}") from None

    def acquire(self, family: str, max_wait: float) -> float:
        """Wait for a token of ``family``; return the seconds waited."""
        schedule = self._schedule(family)
        key = self._key(family)
        start = self._clock()
        while True:
            budget = max_wait - (self._clock() - start)
            if budget < 0:  # only after a forfeit: do not spin on a starved CPU
                raise RateLimited(family, schedule.spacing_us / US)
            granted, wait = self.backend.reserve(key, schedule, budget)
            if not granted:
                raise RateLimited(family, wait)
            due = self._clock() + wait
            while (left := due - self._clock()) > 0:
                self._sleep(left)
            if self._clock() - due <= schedule.tolerance:
                waited = self._clock() - start
                RATELIMIT_WAIT_SECONDS.labels(family).observe(waited)
                return waited
            # Woke too late: the slot is forfeited (unused) and we queue again.

    def acquire_many(self, family: str, count: int, max_wait: float) -> list[float]:
        """Reserve up to ``count`` tokens of ``family`` in one backend call, as ``count``
        callers of :meth:`acquire` queued one after another would get them: the times (this
        bucket's clock) their slots fall due, in order; fewer than ``count`` when the rest are
        more than ``max_wait`` away (none reserved for those). Nothing waits here: the caller
        spends each at its slot through :meth:`spend`."""
        schedule = self._schedule(family)
        now = self._clock()
        waits = self.backend.reserve_many(self._key(family), schedule, max_wait, count)
        return [now + wait for wait in waits]

    def spend(self, family: str, due: float, max_wait: float) -> None:
        """Wait for a slot :meth:`acquire_many` reserved; a caller woken too late for it
        forfeits it and queues again, as in :meth:`acquire` (which may raise
        :class:`RateLimited`)."""
        start = self._clock()
        while (left := due - self._clock()) > 0:
            self._sleep(left)
        if self._clock() - due <= self._schedule(family).tolerance:
            RATELIMIT_WAIT_SECONDS.labels(family).observe(max(0.0, due - start))
            return
        self.acquire(family, max_wait)

    def try_spare(self, family: str, keep: int) -> bool:
        """A token of ``family`` only if one is free now and more than ``keep`` stay free
        (background work: see "Spare capacity" above); never waits. ``True``: granted."""
        granted, _ = self.backend.reserve(self._key(family), self._schedule(family), 0.0, keep)
        if granted:
            RATELIMIT_WAIT_SECONDS.labels(family).observe(0.0)
        return granted

    def pause(self, family: str, seconds: float) -> None:
        """Hold every new grant of ``family`` for ``seconds`` (never shortens a pause)."""
        self._schedule(family)
        if seconds > 0:
            self.backend.pause(self._key(family), seconds)

    def state(self) -> dict[str, FamilyState]:
        """Each family's tokens, queue, next free slot and pause, for a status command."""
        out: dict[str, FamilyState] = {}
        for family, schedule in self._schedules.items():
            snap = self.backend.snapshot(self._key(family))
            now, virtual = snap.now, snap.virtual[-schedule.burst :]
            slot, _ = next_slot(now, virtual, snap.last, snap.paused, schedule)
            tokens = free_tokens(now, virtual, schedule) if slot == now else 0
            bucket = self.buckets[family]
            out[family] = FamilyState(
                rate=bucket.rate,
                burst=bucket.burst,
                tokens=tokens,
                booked_ahead=max(0, snap.last - now) / US,
                next_free_in=(slot - now) / US,
                paused_for=max(0, snap.paused - now) / US,
            )
        return out
