"""A realistic mixed stream of Calendly webhooks, what Brevo should end up with, and senders.

:func:`build_stream` makes a set of *logical* events (each a distinct event id) over many
contacts: plain bookings, plain cancels, reschedules (both halves, each order), contacts with
two bookings, no-shows and group events whose guests also book on their own, then adds
duplicate deliveries. :class:`Expected` is computed from the logical set alone with the same
pure functions the worker uses (:func:`~calendly_brevo.projection.custom_event`,
:func:`~calendly_brevo.projection.project_contact` over the merged records), so it is the
answer for *any* delivery order. :func:`send_all` posts deliveries, signed at send time, from
several threads over several receivers.
"""

from __future__ import annotations

import json
import random
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from calendly_brevo.config import Settings
from calendly_brevo.events import event_from_dict
from calendly_brevo.projection import ContactProjection, custom_event, project_contact
from calendly_brevo.queueing import NAMESPACE, queue_key
from calendly_brevo.signature import HEADER, sign
from calendly_brevo.state import mark_from_event, merge_marks, record_from_event
from tests import payloads as p

EVENT_TYPES = (p.DEFAULT_EVENT_TYPE_URI, p.DEMO_EVENT_TYPE_URI)
#: The config the stream is meant for: both event types mapped, a re-engagement list on cancel.
STREAM_CONFIG = f"""
connectors:
  calendly:
    event_mapping:
      discovery_call:
        list_id: 10
        event_type_uri: "{p.DEFAULT_EVENT_TYPE_URI}"
      demo:
        list_id: 11
        event_type_uri: "{p.DEMO_EVENT_TYPE_URI}"
field_mapping:
  email: email
  name: FIRSTNAME
  last_name: LASTNAME
  event_type_name: CALENDLY_EVENT_TYPE
  scheduled_at: MEETING_DATE
  status: BOOKING_STATUS
brevo:
  list_moves:
    on_cancel:
      add: [12]
"""
STREAM_LISTS = {10: "Discovery", 11: "Demo", 12: "Re-engage"}
STREAM_ATTRIBUTES = (
    ("CALENDLY_EVENT_TYPE", "text"),
    ("MEETING_DATE", "date"),
    ("BOOKING_STATUS", "text"),
)


def setup_fake(fake: Any) -> None:
    """Give a running fake Brevo the attributes the stream's mapping needs."""
    for name, kind in STREAM_ATTRIBUTES:
        fake.add_attribute(name, kind)


@dataclass
class Stream:
    logical: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    duplicates: int
    kinds: Counter[str] = field(default_factory=Counter)


def _ts(day: int, hour: int = 9, minute: int = 0) -> str:
    return f"2030-02-{day:02d}T{hour:02d}:{minute:02d}:00.000000Z"


def build_stream(
    contacts: int = 100, *, groups: int = 4, group_size: int = 8, seed: int = 7
) -> Stream:
    """About 3 logical events per contact plus ``groups * group_size`` group bookings, in a
    shuffled delivery order with ~10 % duplicate deliveries. Reschedule pairs alternate which
    half is delivered first."""
    rng = random.Random(seed)
    logical: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    pairs: list[tuple[int, int, bool]] = []  # (index of cancel, index of create, cancel first)

    def add(kind: str, env: dict[str, Any]) -> int:
        logical.append(env)
        kinds[kind] += 1
        return len(logical) - 1

    scenarios = ("booked", "cancelled", "rescheduled", "no_show", "two_bookings", "moved_then_off")
    for i in range(contacts):
        email = f"guest{i:03d}@example.com" if i % 7 else f"Guest{i:03d}@Example.COM"
        scenario = scenarios[i % len(scenarios)]
        etype = EVENT_TYPES[i % 2]
        uri_a = p.invitee_uri(f"EV{i:03d}A", f"INV{i:03d}A")
        uri_b = p.invitee_uri(f"EV{i:03d}B", f"INV{i:03d}B")
        created = _ts(1 + i % 20, 8)
        start_a = _ts(21 + i % 7, 10 + i % 6)
        add(
            "created",
            p.invitee_created(
                email=email,
                invitee_uri=uri_a,
                event_type_uri=etype,
                start_time=start_a,
                created_at=created,
                name=f"Guest {i}",
            ),
        )
        if scenario == "cancelled":
            add(
                "canceled",
                p.invitee_canceled(
                    email=email,
                    invitee_uri=uri_a,
                    event_type_uri=etype,
                    start_time=start_a,
                    created_at=created,
                    canceled_at=_ts(1 + i % 20, 12),
                    name=f"Guest {i}",
                ),
            )
        elif scenario in ("rescheduled", "moved_then_off"):
            cancel, create = p.reschedule_pair(
                email=email,
                old_invitee_uri=uri_a,
                new_invitee_uri=uri_b,
                old_start=start_a,
                new_start=_ts(21 + (i + 3) % 7, 15),
                event_type_uri=etype,
                name=f"Guest {i}",
                created_at=created,
                rescheduled_at=_ts(1 + i % 20, 13),
            )
            c = add("reschedule_cancel", cancel)
            n = add("rescheduled", create)
            pairs.append((c, n, bool(i % 2)))
            if scenario == "moved_then_off":
                add(
                    "canceled",
                    p.invitee_canceled(
                        email=email,
                        invitee_uri=uri_b,
                        event_type_uri=etype,
                        start_time=_ts(21 + (i + 3) % 7, 15),
                        created_at=_ts(1 + i % 20, 13),
                        canceled_at=_ts(1 + i % 20, 16),
                        old_invitee=uri_a,
                        name=f"Guest {i}",
                    ),
                )
        elif scenario == "no_show":
            add(
                "no_show",
                p.no_show_created(
                    email=email,
                    invitee_uri=uri_a,
                    no_show_uri=p.no_show_uri(f"NS{i:03d}"),
                    start_time=start_a,
                    event_type_uri=etype,
                    created_at=created,
                    marked_at=_ts(21 + i % 7, 18),
                    name=f"Guest {i}",
                ),
            )
        elif scenario == "two_bookings":
            other = EVENT_TYPES[(i + 1) % 2]
            add(
                "created",
                p.invitee_created(
                    email=email,
                    invitee_uri=uri_b,
                    event_type_uri=other,
                    start_time=_ts(21 + (i + 2) % 7, 11),
                    created_at=_ts(1 + i % 20, 9),
                    name=f"Guest {i}",
                ),
            )
            add(
                "canceled",
                p.invitee_canceled(
                    email=email,
                    invitee_uri=uri_b,
                    event_type_uri=other,
                    start_time=_ts(21 + (i + 2) % 7, 11),
                    created_at=_ts(1 + i % 20, 9),
                    canceled_at=_ts(1 + i % 20, 14),
                    name=f"Guest {i}",
                ),
            )
    # Group events: guests drawn from the contacts above, so group bookings race their own.
    for g in range(groups):
        guests = rng.sample(range(contacts), group_size)
        emails = [f"guest{j:03d}@example.com" for j in guests]
        for env in p.group_event(emails, event=f"GROUP{g:03d}", start_time=_ts(25, 9 + g)):
            add("group", env)

    order = list(range(len(logical)))
    rng.shuffle(order)
    position = {idx: pos for pos, idx in enumerate(order)}
    for cancel_at, create_at, cancel_first in pairs:
        first, second = (cancel_at, create_at) if cancel_first else (create_at, cancel_at)
        if position[first] > position[second]:
            a, b = position[first], position[second]
            order[a], order[b] = second, first
            position[first], position[second] = b, a
    deliveries = [logical[i] for i in order]
    dupes = [logical[i] for i in rng.sample(range(len(logical)), len(logical) // 10)]
    for env in dupes:
        deliveries.insert(rng.randrange(len(deliveries) + 1), env)
    return Stream(logical, deliveries, len(dupes), kinds)


# --- what Brevo must end up with ---------------------------------------------------------------
@dataclass
class Expected:
    events: Counter[tuple[str, str]]
    contacts: dict[str, ContactProjection]


def expected(logical: Sequence[dict[str, Any]], settings: Settings) -> Expected:
    events: Counter[tuple[str, str]] = Counter()
    records = []
    marks = []
    emails: set[str] = set()
    for doc in logical:
        parsed = event_from_dict(doc)
        ident = parsed.identity
        event = custom_event(parsed, None, settings.rules)
        if event is not None:
            events[(event.name, str(ident.email))] += 1
        record = record_from_event(parsed)
        if record is not None:
            records.append(record)
        mark = mark_from_event(parsed)
        if mark is not None:
            marks.append(mark)
        if ident.email:
            emails.add(ident.email)
    merged_marks = list(merge_marks(marks).values())
    contacts = {e: project_contact(e, records, merged_marks, settings.rules) for e in emails}
    return Expected(events, contacts)


# --- sending ------------------------------------------------------------------------------------
def signed_post(client: httpx.Client, url: str, doc: dict[str, Any], key: str) -> httpx.Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = {HEADER: sign(key, body, int(time.time())), "Content-Type": "application/json"}
    return client.post(url, content=body, headers=headers)


@dataclass
class SendResult:
    statuses: Counter[int | str] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)  # message ids of 202s
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_all(
    deliveries: Sequence[dict[str, Any]],
    urls: Sequence[str],
    key: str,
    *,
    senders: int = 4,
    pause: float = 0.0,
    on_sent: Callable[[int], None] | None = None,
) -> SendResult:
    """Post every delivery once, round-robin over ``urls``, from ``senders`` threads. A
    connection error is recorded as ``"error"`` (never retried: the caller decides)."""
    result = SendResult()
    counter = iter(range(len(deliveries)))
    counter_lock = threading.Lock()

    def sender() -> None:
        with httpx.Client(timeout=15) as client:
            while True:
                with counter_lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    r = signed_post(client, urls[i % len(urls)], deliveries[i], key)
                    outcome: int | str = r.status_code
                except httpx.TransportError:
                    outcome = "error"
                    r = None
                with result.lock:
                    result.statuses[outcome] += 1
                    if r is not None and r.status_code == 202:
                        result.accepted.append(r.json()["message_id"])
                if on_sent is not None:
                    on_sent(i)
                if pause:
                    time.sleep(pause)

    with ThreadPoolExecutor(senders) as pool:
        for future in [pool.submit(sender) for _ in range(senders)]:
            future.result()
    return result


# --- the production shape -----------------------------------------------------------------------
def production_env(
    tmp_path: Path,
    *,
    brevo_url: str,
    brevo_key: str,
    postgres_url: str,
    redis_url: str,
    signing_key: str,
    brevo: str = "",
    sections: str = "",
) -> dict[str, str]:
    """Environment for ``receiver``/``worker`` processes on Redis and Postgres with the stream's
    config; ``brevo`` adds keys under ``brevo:`` (indented two spaces), ``sections`` adds
    top-level sections (``worker:``, ``server:``)."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(STREAM_CONFIG + textwrap.indent(textwrap.dedent(brevo), "  ") + sections)
    return {
        "CONNECTOR_CONFIG": str(cfg),
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": signing_key,
        "BREVO_API_KEY": brevo_key,
        "BREVO_API_URL": brevo_url,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "LOG_FORMAT": "json",
    }


def enqueue_all(enqueuer: Any, docs: Sequence[dict[str, Any]]) -> None:
    """Put every webhook body on the queue as the receiver would (source ``webhook``)."""
    for doc in docs:
        enqueuer.enqueue(json.dumps(doc), received_at=time.time(), source="webhook")


def unacked(client: redis.Redis) -> int:
    """Messages some worker fetched and has not acked yet (Dramatiq's per-worker ack sets)."""
    return sum(int(client.scard(key)) for key in client.scan_iter(f"{NAMESPACE}:__acks__.*"))


def queued(client: redis.Redis) -> int:
    """Messages waiting on the queue (ready, not delayed)."""
    return int(client.llen(queue_key()))
