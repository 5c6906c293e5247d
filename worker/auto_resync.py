"""``sync.auto_resync``: the worker brings stale contacts to Brevo in the background.

At start the worker supervisor (and ``calendly-brevo run``) compares the mapping fingerprint of
its config with the one contacts were last pushed under and logs, once, how many are stale and
the command that fixes them (``mapping_changed``). With ``sync.auto_resync: true`` it then runs
:class:`AutoResync` in a thread: one sweep over every stored contact per mapping fingerprint,
the diff of ``calendly-brevo resync`` (:class:`~calendly_brevo.resync.Resync`; contacts that
match cost no call), so contacts pushed under an earlier mapping and contacts never pushed (a
dry run, a switch that was off) are brought up to date. Custom events are never sent.

Live events first: its Brevo client draws on the shared bucket through a
:class:`~calendly_brevo.ratelimit.spare.SpareBucket`, which takes a token only when one is free
now and half the family's burst stays free; otherwise the pass stops at once and resumes where
it stopped a second later. One runner per deployment: a pass holds a ``SET NX PX`` lock (as
queue maintenance does) and stops after :data:`PASS_SECONDS`; the cursor (the last contact
done) and the "done" mark live in Redis per fingerprint, so a pass another pod picks up
resumes, and a finished sweep is not repeated by the next pod that starts. A process whose
fingerprint is not the newest announced (an old pod during a rolling deploy) stands down,
rather than push its older mapping back over the new one. Without Redis (the embedded mode)
all of it is in the process.

Weak spots: a pod restarted with an *old* config during a rollout announces the old
fingerprint again, and the new pods' runners stand down until one of them restarts; a contact
whose upsert went out and whose unlink call then found no spare token is pushed again next
pass (idempotent); a failed push is a ``resync_failed`` dead letter, as with the command.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import redis

from calendly_brevo.bootstrap import Services
from calendly_brevo.config import Settings
from calendly_brevo.errors import RateLimited
from calendly_brevo.ledger import Ledger
from calendly_brevo.logs import get_logger
from calendly_brevo.pushed import mapping_fingerprint
from calendly_brevo.ratelimit.spare import SpareBucket
from calendly_brevo.resync import Resync, ResyncBrevo, contacts_synced

log = get_logger("calendly_brevo.worker")

PREFIX = "calendly_brevo:auto_resync"
#: A pass stops after this long (and its lock expires a little later), so a pod that dies with
#: the lock delays the sweep by that much at most.
PASS_SECONDS = 20.0
LOCK_SECONDS = PASS_SECONDS + 10.0
#: Between passes: when no spare token was left, and when another process held the lock.
RETRY_SECONDS = 1.0
WAIT_SECONDS = 15.0
#: The cursor and "done" marks are forgotten after this long (a later start sweeps again).
MARK_SECONDS = 30 * 86400
DONE = "\x00done"
PAGE = 200


class Coordination(Protocol):
    """Who sweeps, and how far the sweep under one fingerprint got."""

    def announce(self, fingerprint: str) -> None:
        """This process runs under ``fingerprint`` (the newest announced wins)."""
        ...

    def lead(self, fingerprint: str) -> bool:
        """This process may run a pass now: the lock is its own, and its fingerprint the
        newest announced."""
        ...

    def cursor(self, fingerprint: str) -> str | None:
        """The last contact done under ``fingerprint`` (:data:`DONE`: the sweep finished)."""
        ...

    def save(self, fingerprint: str, cursor: str) -> None: ...


class RedisCoordination:
    """Shared by every process of the deployment."""

    def __init__(self, client: redis.Redis, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._token = uuid.uuid4().hex

    def announce(self, fingerprint: str) -> None:
        self.client.set(f"{self.prefix}:fingerprint", fingerprint, ex=MARK_SECONDS)

    def _get(self, key: str) -> str | None:
        value = self.client.get(f"{self.prefix}:{key}")
        return value.decode() if isinstance(value, bytes) else value

    def lead(self, fingerprint: str) -> bool:
        newest = self._get("fingerprint")
        if newest is not None and newest != fingerprint:
            return False
        key, ttl = f"{self.prefix}:lock", int(LOCK_SECONDS * 1000)
        if self.client.set(key, self._token, nx=True, px=ttl):
            return True
        return self._get("lock") == self._token

    def cursor(self, fingerprint: str) -> str | None:
        return self._get(f"cursor:{fingerprint}")

    def save(self, fingerprint: str, cursor: str) -> None:
        self.client.set(f"{self.prefix}:cursor:{fingerprint}", cursor, ex=MARK_SECONDS)


@dataclass
class LocalCoordination:
    """One process (the embedded mode): nobody to share with."""

    cursors: dict[str, str] = field(default_factory=dict)

    def announce(self, fingerprint: str) -> None:
        return None

    def lead(self, fingerprint: str) -> bool:
        return True

    def cursor(self, fingerprint: str) -> str | None:
        return self.cursors.get(fingerprint)

    def save(self, fingerprint: str, cursor: str) -> None:
        self.cursors[fingerprint] = cursor


@dataclass
class PassResult:
    checked: int = 0
    changed: int = 0
    #: ``done``: the sweep finished; ``spare``: no spare token; ``time``: the pass ran out of
    #: time; ``not_leader``: another process sweeps (or has a newer fingerprint).
    stopped: str = "done"


@dataclass
class AutoResync:
    ledger: Ledger
    settings: Settings
    #: A Brevo client on a :class:`~calendly_brevo.ratelimit.spare.SpareBucket`.
    brevo: ResyncBrevo
    coordination: Coordination
    clock: Callable[[], float] = time.monotonic
    fingerprint: str = ""
    #: The process is stopping: a pass ends after the contact at hand.
    stopping: Callable[[], bool] = lambda: False
    #: The contact being resynced, and the last one done, in this pass.
    _current: str | None = None
    _done: str | None = None

    def __post_init__(self) -> None:
        self.fingerprint = self.fingerprint or mapping_fingerprint(self.settings.rules)

    def announce(self) -> None:
        """Log, once, how many contacts were pushed under another mapping; claim the newest
        fingerprint for this process."""
        stale = self.ledger.stale_pushed(self.fingerprint)
        if stale:
            log.warning(
                "mapping_changed",
                stale_contacts=stale,
                fix="auto_resync is on: resyncing them in the background"
                if self.settings.calendly.sync.auto_resync
                else "run `calendly-brevo resync` (or set sync.auto_resync: true)",
            )
        self.coordination.announce(self.fingerprint)

    def run_once(self) -> PassResult:
        """One pass: resync from the cursor until the sweep is done, no token is spare, or
        :data:`PASS_SECONDS` have passed."""
        fp, coord = self.fingerprint, self.coordination
        if not coord.lead(fp):
            return PassResult(stopped="not_leader")
        cursor = coord.cursor(fp)
        if cursor == DONE:
            return PassResult()
        deadline = self.clock() + PASS_SECONDS
        run = Resync(self.ledger, self.settings.rules, self.brevo)
        result = PassResult(stopped="done")
        self._start_pass()
        try:
            run.run(self._emails(cursor, deadline, result), self._progress)
        except RateLimited:
            result.stopped = "spare"
        result.checked, result.changed = run.summary.checked, run.summary.changed
        if result.stopped == "done":
            coord.save(fp, DONE)
            log.info("auto_resync_done", changed=run.summary.changed, failures=run.summary.failures)
        elif self._done is not None:
            coord.save(fp, self._done)
        return result

    def _start_pass(self) -> None:
        self._current = self._done = None

    def _progress(self) -> None:
        self._done = self._current

    def _emails(self, after: str | None, deadline: float, result: PassResult) -> Iterator[str]:
        while True:
            page = self.ledger.contacts(after=after, limit=PAGE)
            for email in page:
                if self.clock() >= deadline or self.stopping():
                    result.stopped = "time"
                    return
                self._current = email
                yield email
            if len(page) < PAGE:
                return
            after = page[-1]

    def run_forever(self, stop: Callable[[float], bool]) -> None:
        """Passes until the sweep is done or ``stop(seconds)`` (an ``Event.wait``) is true."""
        while True:
            try:
                result = self.run_once()
            except Exception as exc:  # a background helper: log, wait, try again
                log.warning("auto_resync_failed", error=type(exc).__name__)
                result = PassResult(stopped="error")
            if result.stopped == "done":
                return
            wait = WAIT_SECONDS if result.stopped in ("not_leader", "error") else RETRY_SECONDS
            if stop(wait):
                return


def build(services: Services) -> AutoResync:
    """The runner of ``services``' deployment: its Brevo client on spare tokens of the shared
    bucket, coordinated in Redis when there is one."""
    from worker.runtime import make_client, make_limiter

    settings = services.settings
    brevo = make_client(services, SpareBucket(make_limiter(services)))
    coordination: Coordination = LocalCoordination()
    if settings.storage.redis_url:
        coordination = RedisCoordination(services.redis)
    return AutoResync(services.ledger, settings, brevo, coordination)


def auto_resync(
    settings: Settings, stop: threading.Event, services: Services | None = None
) -> None:
    """The supervisor's (and ``run``'s) thread: log stale contacts once, then, with
    ``sync.auto_resync`` and a Brevo key, sweep until done or ``stop``. ``services``: the
    process's own (the embedded mode shares its in-process bucket); else a private set."""
    own = services is None
    services = services or Services(settings)
    try:
        runner = build(services)
        runner.stopping = stop.is_set
        runner.announce()
        sync = settings.calendly.sync
        if sync.auto_resync and not settings.dry_run and contacts_synced(settings.rules):
            runner.run_forever(stop.wait)
    except Exception as exc:  # a background helper must not take the worker down
        log.warning("auto_resync_failed", error=type(exc).__name__)
    finally:
        if own:
            services.close()
