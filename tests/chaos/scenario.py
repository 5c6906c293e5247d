"""The chaos run's events and the model the end state is checked against.

:func:`build` makes ``n`` *logical* events (one Calendly occurrence each: distinct event ids)
from :mod:`tests.payloads`: single bookings, bookings cancelled, reschedules (the original
booking, then the cancel/create pair, whose halves are delivered in both orders), no-shows
(some unmarked again) and group events whose guests also book on their own, so contacts hold
several bookings. :func:`deliveries` adds the duplicates (Calendly's retries) and shuffles.

The model is the connector's own pure functions over the *whole* event set: per email,
:func:`~calendly_brevo.projection.project_contact` of every record and mark, and per logical
event the name :func:`~calendly_brevo.projection.custom_event` gives. The worker computes the
same functions incrementally, from whatever subset it has seen; agreement at the end is the
order-independence and exactly-once claim.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from calendly_brevo.config import Settings
from calendly_brevo.events import parse_envelope, read_event
from calendly_brevo.projection import ContactProjection, custom_event, project_contact
from calendly_brevo.state import mark_from_event, record_from_event
from tests import payloads

ET_INTRO = payloads.event_type_uri("CHAOSINTRO")
ET_DEMO = payloads.event_type_uri("CHAOSDEMO")
ET_OTHER = payloads.event_type_uri("CHAOSUNMAPPED")
EVENT_TYPES = ((ET_INTRO, "Intro call"), (ET_DEMO, "Product demo"), (ET_OTHER, "Office hours"))

CONFIG = f"""
connectors:
  calendly:
    sync: {{auto_resync: true}}  # the supervisor's background sweep runs under fire too
    event_mapping:
      intro: {{list_id: 10, event_type_uri: "{ET_INTRO}"}}
      demo: {{list_id: 11, event_type_uri: "{ET_DEMO}"}}
field_mapping:
  email: email
  name: FIRSTNAME
  last_name: LASTNAME
  questions_and_answers: {{company: COMPANY}}
  event_type_name: CALENDLY_EVENT_TYPE
  scheduled_at: MEETING_DATE
  status: BOOKING_STATUS
brevo:
  timeout_seconds: 1.5
  rate_limits:
    contacts: {{rate: 150, burst: 30}}
    events: {{rate: 150, burst: 30}}
    other: {{rate: 5, burst: 20}}
  list_moves:
    on_cancel: {{add: [20]}}
    on_no_show: {{add: [21], remove: [11]}}
worker:
  max_retries: 500
  min_backoff_seconds: 0.1
  max_backoff_seconds: 1.0
  shutdown_timeout_seconds: 5
  heartbeat_timeout_seconds: 5
  maintenance_interval_seconds: 2
  maintenance_chance: 1  # Dramatiq's chance maintenance all but off: the timer must recover
"""
LISTS = {10: "Intro", 11: "Demo", 20: "Re-engage", 21: "No-show"}
ATTRIBUTES = (
    ("CALENDLY_EVENT_TYPE", "text"),
    ("MEETING_DATE", "date"),
    ("BOOKING_STATUS", "text"),
    ("COMPANY", "text"),
)


@dataclass
class Logical:
    envelope: dict[str, Any]
    kind: str
    event_id: str = ""
    email: str = ""
    #: (name, email, invitee_uri, no_show_uri) of the custom event it must fire, or None.
    custom: tuple[str, str, str, str] | None = None


@dataclass
class Scenario:
    events: list[Logical]
    #: Indexes into ``events``, in delivery order (duplicates appear twice).
    order: list[int] = field(default_factory=list)
    duplicates: int = 0
    pairs_cancel_first: int = 0
    pairs_create_first: int = 0

    def body(self, index: int) -> bytes:
        return payloads.body(self.events[index].envelope)

    def kinds(self) -> Counter[str]:
        return Counter(e.kind for e in self.events)


def _ts(rng: random.Random, year: int = 2030) -> str:
    day, hour, minute = rng.randint(1, 28), rng.randint(7, 19), rng.choice((0, 15, 30, 45))
    return f"{year}-{rng.randint(1, 12):02d}-{day:02d}T{hour:02d}:{minute:02d}:00.000000Z"


def build(n: int, seed: int) -> Scenario:
    """At least ``n`` logical events (a scenario adds its events whole)."""
    rng = random.Random(seed)
    seq = iter(range(1, 10**9))
    people: list[str] = []
    out: list[Logical] = []
    pairs: list[tuple[int, int]] = []

    def person() -> str:
        if people and rng.random() < 0.3:
            return rng.choice(people)
        i = next(seq)
        email = rng.choice((f"p{i}@chaos.example.com", f"P{i}+cal@Chaos.Example.com"))
        people.append(email)
        return email

    def booking(email: str, **kw: Any) -> dict[str, Any]:
        et, et_name = rng.choice(EVENT_TYPES)
        i = next(seq)
        args: dict[str, Any] = {
            "email": email,
            "invitee_uri": payloads.invitee_uri(f"CEV{i:06d}", f"CINV{i:06d}"),
            "event_type_uri": et,
            "event_type_name": et_name,
            "start_time": _ts(rng),
            "created_at": _ts(rng, 2029),
            "name": f"Chaos Person{i}",
            "questions": (("Company", f"Firm {i % 37}"),),
        }
        args.update(kw)
        return payloads.invitee_created(**args)

    while len(out) < n:
        kind = rng.choices(
            ("booking", "cancel", "reschedule", "no_show", "group"), (30, 15, 25, 15, 15)
        )[0]
        if kind == "booking":
            out.append(Logical(booking(person()), "booking"))
        elif kind == "cancel":
            created = booking(person())
            p = created["payload"]
            cancel = payloads.invitee_canceled(
                email=p["email"],
                invitee_uri=p["uri"],
                event_type_uri=p["scheduled_event"]["event_type"],
                event_type_name=p["scheduled_event"]["name"],
                start_time=p["scheduled_event"]["start_time"],
                name=p["name"],
                created_at=p["created_at"],
                canceled_at=_ts(rng, 2029),
            )
            out += [Logical(created, "booking"), Logical(cancel, "cancel")]
        elif kind == "reschedule":
            email = person()
            original = booking(email)
            p = original["payload"]
            i = next(seq)
            new_uri = payloads.invitee_uri(f"CEV{i:06d}", f"CINV{i:06d}")
            canceled, created = payloads.reschedule_pair(
                email=email,
                old_invitee_uri=p["uri"],
                new_invitee_uri=new_uri,
                old_start=p["scheduled_event"]["start_time"],
                new_start=_ts(rng),
                event_type_uri=p["scheduled_event"]["event_type"],
                event_type_name=p["scheduled_event"]["name"],
                name=p["name"],
                created_at=p["created_at"],
                rescheduled_at=_ts(rng, 2029),
            )
            out.append(Logical(original, "booking"))
            pairs.append((len(out), len(out) + 1))
            out += [Logical(canceled, "reschedule_cancel"), Logical(created, "reschedule_create")]
        elif kind == "no_show":
            created = booking(person())
            p = created["payload"]
            mark = payloads.no_show_uri(f"CNS{next(seq):06d}")
            marked = payloads.no_show_created(
                email=p["email"],
                invitee_uri=p["uri"],
                no_show_uri=mark,
                start_time=p["scheduled_event"]["start_time"],
                event_type_uri=p["scheduled_event"]["event_type"],
                event_type_name=p["scheduled_event"]["name"],
                name=p["name"],
                created_at=p["created_at"],
                marked_at="2030-12-30T10:00:00.000000Z",
            )
            out += [Logical(created, "booking"), Logical(marked, "no_show")]
            if rng.random() < 0.4:
                unmarked = payloads.no_show_deleted(
                    email=p["email"],
                    invitee_uri=p["uri"],
                    no_show_uri=mark,
                    marked_at="2030-12-30T10:00:00.000000Z",
                    deleted_at="2030-12-30T11:00:00.000000Z",
                    start_time=p["scheduled_event"]["start_time"],
                    name=p["name"],
                    created_at=p["created_at"],
                )
                out.append(Logical(unmarked, "no_show_deleted"))
        else:
            guests = list(dict.fromkeys(person() for _ in range(rng.randint(3, 5))))
            et, et_name = rng.choice(EVENT_TYPES[:2])
            group = payloads.group_event(
                guests,
                event=f"CGRP{next(seq):06d}",
                event_type_uri=et,
                event_type_name=et_name,
                start_time=_ts(rng),
            )
            out += [Logical(g, "group") for g in group]
    return _order(Scenario(out), pairs, rng)


def _order(scenario: Scenario, pairs: list[tuple[int, int]], rng: random.Random) -> Scenario:
    order = list(range(len(scenario.events)))
    rng.shuffle(order)
    dupes = rng.sample(range(len(scenario.events)), k=max(1, len(scenario.events) // 10))
    for index in dupes:
        first = order.index(index)
        order.insert(rng.randint(first + 1, len(order)), index)
    scenario.order = order
    scenario.duplicates = len(dupes)
    position = {i: order.index(i) for i in range(len(scenario.events))}
    for cancel, create in pairs:
        if position[cancel] < position[create]:
            scenario.pairs_cancel_first += 1
        else:
            scenario.pairs_create_first += 1
    return scenario


# --- the model ---------------------------------------------------------------------------------
def annotate(scenario: Scenario, settings: Settings) -> None:
    """Fill in each logical event's id, email and expected custom event."""
    for logical in scenario.events:
        parsed = read_event(parse_envelope(payloads.body(logical.envelope)))
        ident = parsed.identity
        logical.event_id, logical.email = ident.event_id, ident.email or ""
        event = custom_event(parsed, None, settings.rules)
        if event is not None:
            logical.custom = (
                event.name,
                ident.email or "",
                ident.invitee_uri or "",
                ident.no_show_uri or "",
            )
    ids = [e.event_id for e in scenario.events]
    assert len(set(ids)) == len(ids), "scenario built two logical events with one event id"


def expected_contacts(scenario: Scenario, settings: Settings) -> dict[str, ContactProjection]:
    by_email: dict[str, list[Any]] = {}
    for logical in scenario.events:
        parsed = read_event(parse_envelope(payloads.body(logical.envelope)))
        by_email.setdefault(logical.email, []).append(parsed)
    model = {}
    for email, envs in by_email.items():
        records = [r for r in (record_from_event(e) for e in envs) if r is not None]
        marks = [m for m in (mark_from_event(e) for e in envs) if m is not None]
        model[email] = project_contact(email, records, marks, settings.rules)
    return model


def expected_events(scenario: Scenario) -> Counter[tuple[str, str, str, str]]:
    return Counter(e.custom for e in scenario.events if e.custom is not None)


def fired_key(event: dict[str, Any]) -> tuple[str, str, str, str]:
    props = event.get("event_properties") or {}
    return (
        event["event_name"],
        str((event.get("identifiers") or {}).get("email_id", "")).lower(),
        str(props.get("invitee_uri", "")),
        str(props.get("no_show_uri", "")),
    )


def contact_diff(model: dict[str, ContactProjection], contacts: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between the model and the fake's contacts."""
    actual = {c["email"].lower(): c for c in contacts}
    problems: list[str] = []
    for email, proj in sorted(model.items()):
        contact = actual.pop(email, None)
        if contact is None:
            problems.append(f"{email}: missing in Brevo")
            continue
        for key, value in proj.attributes.items():
            if value is None:
                continue
            if contact["attributes"].get(key) != value:
                got = contact["attributes"].get(key)
                problems.append(f"{email}: {key} = {got!r}, model says {value!r}")
        if sorted(contact["listIds"]) != sorted(proj.list_ids):
            problems.append(f"{email}: lists {contact['listIds']}, model says {proj.list_ids}")
    problems += [f"{email}: in Brevo but not in the model" for email in actual]
    return problems


def describe(scenario: Scenario) -> str:
    return json.dumps(dict(scenario.kinds()), sort_keys=True)
