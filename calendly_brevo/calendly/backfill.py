"""Backfill and reconcile: walk Calendly's scheduled events and replay them as webhooks.

Both walk ``GET /scheduled_events`` (active and canceled, ``sort=start_time:asc``) and each
event's invitees, and enqueue *synthesized webhook envelopes* through the normal queue with
source ``backfill`` / ``reconcile``. The worker cannot tell them from deliveries, so they get the
same event ids (event name + invitee URI + no-show URI) and nothing is applied twice:

- every invitee gives ``invitee.created`` (with the invitee as it was when booked: status
  ``active``, no cancellation, no no-show; ``old_invitee`` kept, so a rescheduled booking is
  recognised as one);
- a canceled invitee also gives ``invitee.canceled`` (as it is now: ``rescheduled`` and
  ``new_invitee`` tell a reschedule from a cancellation);
- an invitee with ``no_show`` also gives ``invitee_no_show.created``.

A backfill fetches the invitees of up to :attr:`WalkHooks.prefetch` events of a page at once,
ahead of the event it enqueues (one request per event: one at a time, the walk waited on each
round trip); it still enqueues them in the page's order.

**Backfill** is resumable: after every scheduled event the cursor (the page token of the current
page, the last event finished on it, the counts) is written to ``sync_state`` under
:data:`BACKFILL_STATE`. A later run with the same window continues after the last finished event;
``restart=True`` starts over. A crash replays at most the invitees of one event (harmless: same
event ids).

**Reconcile** catches what webhooks missed (a disabled subscription, an outage longer than
Calendly's 24 h of retries). Calendly filters scheduled events by *start time* only, not by
update time, so a cancellation or reschedule of a meeting weeks ahead would be missed by
"events updated recently". Reconcile therefore uses ``min_start_time = now - window`` and **no
max**: it covers every future booking (where cancellations and reschedules happen) plus the
recent past (where no-shows get marked). Its cost grows with the number of future bookings;
changes to meetings that started before the window are only caught by a backfill. It enqueues
only envelopes whose event id the ledger has not settled (applied, ignored, or dead-lettered:
replay those with ``dlq replay``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.db.models import SyncState
from calendly_brevo.metrics import BACKFILL_ENVELOPES
from calendly_brevo.times import parse_iso

if TYPE_CHECKING:
    from calendly_brevo.ledger import Ledger

BACKFILL_STATE = "calendly.backfill"


class Enqueue(Protocol):
    def enqueue(self, body: str, *, received_at: float, source: str) -> str: ...


@dataclass
class WalkStats:
    pages: int = 0
    events: int = 0
    invitees: int = 0
    enqueued: int = 0
    skipped: int = 0
    #: start_time of the last scheduled event walked (progress through the window).
    position: str | None = None
    resumed: bool = False


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime | None = None
    status: str | None = None  # active | canceled | None (both)
    organization: str | None = None
    user: str | None = None

    def key(self) -> dict[str, str | None]:
        return {
            "since": iso(self.since),
            "until": iso(self.until) if self.until else None,
            "status": self.status,
            "organization": self.organization,
            "user": self.user,
        }

    def fraction(self, position: str | None, now: datetime) -> float | None:
        """How far ``position`` is through the window (None when unknown)."""
        if position is None:
            return None
        end = self.until or max(now, self.since + timedelta(seconds=1))
        total = (end - self.since).total_seconds()
        done = (parse_iso(position) - self.since).total_seconds()
        return max(0.0, min(done / total, 0.99 if self.until is None else 1.0))


@dataclass
class Cursor:
    window: dict[str, str | None]
    page_token: str | None = None
    last_event_uri: str | None = None
    done: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- envelopes ----------------------------------------------------------------------------------
def _envelope(
    name: str, created_at: Any, created_by: str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {"event": name, "created_at": created_at, "created_by": created_by, "payload": payload}


def envelopes_for(
    invitee: dict[str, Any], event: dict[str, Any], *, created_by: str
) -> list[dict[str, Any]]:
    """The webhook envelopes Calendly would have sent for this invitee (see module doc)."""
    now = dict(invitee, scheduled_event=event)
    booked_event = {k: v for k, v in event.items() if k != "cancellation"}
    booked_event["status"] = "active"
    booked = {k: v for k, v in invitee.items() if k != "cancellation"}
    booked.update(
        status="active",
        rescheduled=False,
        new_invitee=None,
        no_show=None,
        scheduled_event=booked_event,
    )
    out = [_envelope("invitee.created", invitee.get("created_at"), created_by, booked)]
    if invitee.get("status") == "canceled":
        when = (invitee.get("cancellation") or {}).get("created_at") or invitee.get("updated_at")
        out.append(_envelope("invitee.canceled", when, created_by, now))
    no_show = invitee.get("no_show")
    if isinstance(no_show, dict) and no_show.get("uri"):
        out.append(_envelope("invitee_no_show.created", no_show.get("created_at"), created_by, now))
    return out


def envelope_event_id(envelope: dict[str, Any]) -> str:
    from calendly_brevo.events import event_id

    name = str(envelope["event"])
    payload = envelope["payload"]
    no_show = payload.get("no_show") if name.startswith("invitee_no_show.") else None
    return event_id(name, payload.get("uri"), (no_show or {}).get("uri"))


def encode(envelope: dict[str, Any]) -> str:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


# --- the walk -----------------------------------------------------------------------------------
def _event_params(window: Window) -> dict[str, str | int | None]:
    return CalendlyClient.scheduled_event_params(
        organization=window.organization,
        user=None if window.organization else window.user,
        status=window.status,
        min_start_time=iso(window.since),
        max_start_time=iso(window.until) if window.until else None,
    )


def _envelopes(
    event: dict[str, Any], invitees: Iterable[dict[str, Any]], created_by: str, stats: WalkStats
) -> Iterator[dict[str, Any]]:
    for invitee in invitees:
        stats.invitees += 1
        yield from envelopes_for(invitee, event, created_by=created_by)


def _fetched(
    client: CalendlyClient, events: list[dict[str, Any]], pool: ThreadPoolExecutor
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each of ``events`` with its invitees, in order. Up to ``pool``'s threads fetch the
    invitees of the events ahead while the one before is enqueued: each event is a request of
    its own, and one at a time the walk waited on every round trip. (Calendly's limit, 500
    requests a minute on paid plans, still paces a long walk: the client waits out a 429.)"""
    invitees = pool.map(lambda e: list(client.list_invitees(e["uri"])), events)
    return zip(events, invitees, strict=True)


@contextmanager
def _fetchers(threads: int) -> Iterator[ThreadPoolExecutor]:
    """The threads that fetch ahead. A walk that stops (a crash, Ctrl-C) drops the fetches not
    started instead of waiting for them: against Calendly's limit each may wait out a 429."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix="backfill-fetch")
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _enqueue_event(
    enqueuer: Enqueue,
    event: dict[str, Any],
    invitees: list[dict[str, Any]],
    created_by: str,
    stats: WalkStats,
    clock: Callable[[], float],
) -> None:
    for envelope in _envelopes(event, invitees, created_by, stats):
        enqueuer.enqueue(encode(envelope), received_at=clock(), source="backfill")
        stats.enqueued += 1
        BACKFILL_ENVELOPES.labels("backfill", "enqueued").inc()
    stats.events += 1
    stats.position = event.get("start_time")


def load_cursor(sessions: sessionmaker[Session], name: str) -> Cursor | None:
    with sessions() as session:
        row = session.get(SyncState, name)
        if row is None:
            return None
        value = dict(row.value)
        return Cursor(
            window=value.get("window", {}),
            page_token=value.get("page_token"),
            last_event_uri=value.get("last_event_uri"),
            done=bool(value.get("done")),
            stats=value.get("stats", {}),
        )


def _save_cursor(sessions: sessionmaker[Session], name: str, cursor: Cursor) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        row = session.get(SyncState, name)
        value = asdict(cursor)
        if row is None:
            session.add(SyncState(name=name, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now


@dataclass(frozen=True)
class WalkHooks:
    """How a walk reports and paces itself: progress callbacks, Calendly's page size, and the
    clock that stamps ``received_at`` (and, for ``reconcile``, says what "now" is)."""

    on_progress: Callable[[WalkStats], None] | None = None
    on_page: Callable[[int, WalkStats], None] | None = None
    page_size: int = 100
    clock: Callable[[], float] = time.time
    #: Events whose invitees are fetched at once, ahead of the one being enqueued.
    prefetch: int = 8


@dataclass(frozen=True)
class Resume:
    """Where a backfill keeps its cursor and whether it continues it (``restart`` forgets it)."""

    restart: bool = False
    resume: bool = True
    state_name: str = BACKFILL_STATE


def backfill(
    client: CalendlyClient,
    enqueuer: Enqueue,
    sessions: sessionmaker[Session],
    window: Window,
    *,
    created_by: str,
    resume: Resume = Resume(),
    hooks: WalkHooks = WalkHooks(),
) -> WalkStats:
    """Walk ``window`` and enqueue every invitee's envelopes (resumable, see module doc)."""
    stats = WalkStats()
    cursor = Cursor(window=window.key())
    state_name, clock = resume.state_name, hooks.clock
    saved = None if resume.restart else load_cursor(sessions, state_name)
    skip_until: str | None = None
    if resume.resume and saved is not None and saved.window == window.key() and not saved.done:
        cursor = saved
        skip_until = saved.last_event_uri
        stats = WalkStats(
            **{k: v for k, v in saved.stats.items() if k in WalkStats.__annotations__}
        )
        stats.resumed = True
    with _fetchers(hooks.prefetch) as pool:
        pages = client.pages(
            "scheduled_events",
            _event_params(window),
            page_token=cursor.page_token,
            count=hooks.page_size,
        )
        for page in pages:
            cursor.page_token = page.page_token
            events = page.collection
            uris = [e["uri"] for e in events]
            if skip_until is not None and skip_until in uris:  # resume after the last finished
                events = events[uris.index(skip_until) + 1 :]
            skip_until = None
            for event, invitees in _fetched(client, events, pool):
                _enqueue_event(enqueuer, event, invitees, created_by, stats, clock)
                cursor.last_event_uri = event["uri"]
                cursor.stats = asdict(stats)
                _save_cursor(sessions, state_name, cursor)
                if hooks.on_progress:
                    hooks.on_progress(stats)
            stats.pages += 1
            cursor.page_token = page.next_page_token
            cursor.last_event_uri = None
            cursor.done = page.next_page_token is None
            cursor.stats = asdict(stats)
            _save_cursor(sessions, state_name, cursor)
            if hooks.on_page:
                hooks.on_page(stats.pages, stats)
    if not cursor.done:  # an empty walk never saw a last page
        cursor.done = True
        _save_cursor(sessions, state_name, cursor)
    return stats


def reconcile(
    client: CalendlyClient,
    enqueuer: Enqueue,
    ledger: Ledger,
    *,
    window: timedelta,
    created_by: str,
    organization: str | None = None,
    user: str | None = None,
    hooks: WalkHooks = WalkHooks(),
) -> WalkStats:
    """Enqueue what the ledger has not settled (applied, ignored or dead-lettered), for meetings
    from now-window on ("now" is ``hooks.clock``)."""
    start = datetime.fromtimestamp(hooks.clock(), UTC) - window
    walk = Window(since=start, organization=organization, user=user)
    stats = WalkStats()
    clock = hooks.clock
    for page in client.pages("scheduled_events", _event_params(walk), count=hooks.page_size):
        for event in page.collection:
            invitees = client.list_invitees(event["uri"])
            envelopes = list(_envelopes(event, invitees, created_by, stats))
            done = ledger.settled(envelope_event_id(e) for e in envelopes)
            for envelope in envelopes:
                if envelope_event_id(envelope) in done:
                    stats.skipped += 1
                    BACKFILL_ENVELOPES.labels("reconcile", "skipped").inc()
                    continue
                enqueuer.enqueue(encode(envelope), received_at=clock(), source="reconcile")
                stats.enqueued += 1
                BACKFILL_ENVELOPES.labels("reconcile", "enqueued").inc()
            stats.events += 1
            stats.position = event.get("start_time")
            if hooks.on_progress:
                hooks.on_progress(stats)
        stats.pages += 1
    return stats
