"""DESIGN.md's Calendly → Brevo semantics table, row by row, through the real connector.

One ``calendly-brevo run`` process (embedded mode: SQLite store and queue, the real Dramatiq
actor, pipeline and Brevo client over HTTP) serves the whole module against one fake Brevo.
Every test uses its own emails and invitee URIs, delivers signed webhooks to the receiver one
at a time (each waits until the queue is empty, so the delivery order is the one the test
names) and compares the fake's final state: contact attributes, list memberships and custom
events. The fake validates every request against Brevo's OpenAPI spec; no test may leave a
violation behind.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from calendly_brevo.brevo.setup import STANDARD, required_attributes
from calendly_brevo.config import load_settings
from calendly_brevo.events import event_from_dict
from calendly_brevo.queueing import sqlite_queue_path
from calendly_brevo.signature import HEADER, sign
from tests import payloads as p
from tests.conftest import SIGNING_KEY
from tests.e2e.procs import (
    JITTERY_HOST_RATE_MARGIN,
    Proc,
    free_port,
    run_cli,
    wait_for,
    wait_http,
)
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo
from tests.fakes.brevo_records import over_limit

pytestmark = pytest.mark.e2e

BREVO_KEY = "xkeysib-semantics-0123456789"
DISCOVERY = p.DEFAULT_EVENT_TYPE_URI  # mapped by URI → list 10
DEMO_URI = p.event_type_uri("SEMDEMO0001")  # unmapped URI, name "Demo" → slug → list 11
ONBOARDING_URI = p.event_type_uri("SEMONBOARD01")  # name "Onboarding Call" → lists 12, 13
OTHER_URI = p.event_type_uri("SEMOTHER0001")  # mapped by nothing
LISTS = {10: "Discovery", 11: "Demo", 12: "Onboarding A", 13: "Onboarding B", 20: "Win-back"}
MANAGED = set(LISTS)  # every list the config names
NEWSLETTER = 30  # a list the config does not name: never touched
#: Generous limits on both sides: this module is about mapping, test_delivery about pacing.
RPS = 40

CONFIG = f"""
connectors:
  calendly:
    event_mapping:
      discovery_call:
        list_id: 10
        event_type_uri: "{DISCOVERY}"
      demo:
        list_id: 11
      onboarding:
        name: "onboarding  call"
        list_ids: [12, 13]
field_mapping:
  email: email
  name: FIRSTNAME
  last_name: LASTNAME
  questions_and_answers:
    company: COMPANY
    role: JOB_TITLE
    phone: SMS
  event_type_name: CALENDLY_EVENT_TYPE
  scheduled_at: MEETING_DATE
  status: BOOKING_STATUS
  tracking: {{utm_source: UTM_SOURCE, utm_campaign: UTM_CAMPAIGN}}
  phone_default_region: NL
brevo:
  upsert_routing_form_submitters: true
  list_moves:
    on_cancel: {{add: [20], remove: [10]}}
  rate_margin: {JITTERY_HOST_RATE_MARGIN}
  rate_limits:
    contacts: {{rate: {RPS}, burst: {RPS}}}
    events: {{rate: {RPS}, burst: {RPS}}}
worker:
  min_backoff_seconds: 0.2
  max_backoff_seconds: 1
"""


@dataclass
class Connector:
    fake: FakeBrevoServer
    proc: Proc
    url: str
    data_dir: Path

    def deliver(self, *docs: dict[str, Any], timeout: float = 30.0) -> None:
        """POST each signed webhook and wait until the worker has finished it (queue empty)."""
        for doc in docs:
            raw = json.dumps(doc).encode()
            headers = {
                HEADER: sign(SIGNING_KEY, raw, int(time.time())),
                "Content-Type": "application/json",
            }
            r = httpx.post(self.url, content=raw, headers=headers, timeout=10)
            assert r.status_code == 202, r.text
            wait_for(self._drained, timeout=timeout, interval=0.05, what="an empty queue")

    def _drained(self) -> bool:
        assert self.proc.alive(), self.proc.log()
        with sqlite3.connect(sqlite_queue_path(self.data_dir), timeout=10) as conn:
            (n,) = conn.execute("SELECT count(*) FROM queue_messages").fetchone()
        return int(n) == 0

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "calendly-brevo.db", timeout=10) as conn:
            return conn.execute(sql, args).fetchall()

    # -- what the fake Brevo holds ---------------------------------------------------------
    def contact(self, email: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [
            c for c in self.fake.snapshot()["contacts"] if c["email"] == email
        ]
        assert found, f"no Brevo contact {email}"
        return found[0]

    def attributes(self, email: str) -> dict[str, Any]:
        return dict(self.contact(email)["attributes"])

    def lists(self, email: str) -> set[int]:
        return set(self.contact(email)["listIds"])

    def events(self, email: str) -> list[dict[str, Any]]:
        return [
            e for e in self.fake.snapshot()["events"] if e["identifiers"].get("email_id") == email
        ]

    def event_names(self, email: str) -> list[str]:
        return [e["event_name"] for e in self.events(email)]

    def requests_about(self, email: str) -> list[dict[str, Any]]:
        """Requests whose path or body names ``email`` (path segments may be %-encoded)."""
        forms = (email, quote(email, safe=""))
        return [
            r
            for r in self.fake.snapshot()["requests"]
            if any(f in r["path"] or f in json.dumps(r["body"]) for f in forms)
        ]

    def assert_clean(self) -> None:
        snap = self.fake.snapshot()
        assert snap["violations"] == []
        assert snap["ignored_attributes"] == []
        assert snap["rate_limited"] == {"contacts": 0, "events": 0, "other": 0}, over_limit(snap)
        assert self.db("SELECT reason, error FROM dead_letters") == []


@pytest.fixture(scope="module")
def connector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connector]:
    tmp = tmp_path_factory.mktemp("semantics")
    cfg = tmp / "config.yaml"
    cfg.write_text(CONFIG)
    port = free_port()
    env = {
        "CONNECTOR_CONFIG": str(cfg),
        "CONNECTOR_DATA_DIR": str(tmp / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "BREVO_API_KEY": BREVO_KEY,
        "PORT": str(port),
        "LOG_FORMAT": "json",
        "REDIS_URL": "",
        "DATABASE_URL": "",
    }
    settings = load_settings(cfg, env=env)
    with running_fake_brevo(
        api_key=BREVO_KEY,
        lists=LISTS | {NEWSLETTER: "Newsletter"},
        limits={"contacts": (RPS, 1.0), "events": (RPS, 1.0)},
    ) as fake:
        # What `calendly-brevo brevo setup` creates (test_delivery runs the command itself).
        for name, kind in required_attributes(settings).items():
            if name not in STANDARD:
                fake.add_attribute(name, kind)
        env["BREVO_API_URL"] = fake.base_url
        proc = Proc(["run"], env, tmp / "run.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc)
            yield Connector(fake, proc, f"http://127.0.0.1:{port}/webhooks/calendly", tmp / "data")
        finally:
            proc.stop()


@pytest.fixture
def brevo(connector: Connector) -> Iterator[Connector]:
    """The connector, checked after each test: no spec violation, 429 or dead letter."""
    yield connector
    connector.assert_clean()


def inv(tag: str, n: int = 1) -> str:
    return p.invitee_uri(f"SEM{tag}EV{n}", f"SEM{tag}INV{n}")


# --- invitee.created -----------------------------------------------------------------------------
def test_invitee_created_upserts_the_contact_with_mapped_answers_list_and_created_event(
    brevo: Connector,
) -> None:
    email = "sem-created@example.com"
    doc = p.invitee_created(
        email=email,
        invitee_uri=inv("CR"),
        name="Ada King Lovelace",
        event_type_name="Discovery Call",
        # 23:30 UTC is already the next day in Amsterdam: the date in the invitee's calendar.
        start_time="2030-01-10T23:30:00.000000Z",
        timezone="Europe/Amsterdam",
        questions=[
            ("Company name", "Analytical Engines Ltd"),
            ("What is your role?", "Engineer"),
            ("Phone number", "06 12345678"),
        ],
        tracking={"utm_source": "newsletter", "utm_campaign": "spring"},
        join_url="https://zoom.us/j/123",
    )
    brevo.deliver(doc)

    assert brevo.attributes(email) == {
        "FIRSTNAME": "Ada",
        "LASTNAME": "King Lovelace",
        "COMPANY": "Analytical Engines Ltd",
        "JOB_TITLE": "Engineer",
        "SMS": "+31612345678",
        "CALENDLY_EVENT_TYPE": "Discovery Call",
        "MEETING_DATE": "2030-01-11",
        "BOOKING_STATUS": "booked",
        "UTM_SOURCE": "newsletter",
        "UTM_CAMPAIGN": "spring",
    }
    assert brevo.lists(email) == {10}
    [event] = brevo.events(email)
    assert event["event_name"] == "calendly_invitee_created"
    props = event["event_properties"]
    assert props["invitee_uri"] == inv("CR")
    assert props["event_type_name"] == "Discovery Call"
    assert props["event_type_uri"] == DISCOVERY
    assert props["start_time"] == "2030-01-10T23:30:00.000Z"
    assert props["end_time"] == "2030-01-11T00:00:00.000Z"
    assert props["meeting_date"] == "2030-01-11"
    assert props["timezone"] == "Europe/Amsterdam"
    assert props["cancel_url"].startswith("https://calendly.com/cancellations/")
    assert props["reschedule_url"].startswith("https://calendly.com/reschedulings/")
    assert props["join_url"] == "https://zoom.us/j/123"
    assert props["utm_source"] == "newsletter"
    assert event["event_date"] == "2030-01-01T10:00:00.000Z"  # when the booking was made


def test_event_types_map_to_lists_by_uri_by_slug_and_by_name(brevo: Connector) -> None:
    # Already in Brevo, added by hand to a managed list and to one the config does not name.
    known = "sem-slug@example.com"
    r = httpx.post(
        f"{brevo.fake.base_url}/contacts",
        headers={"api-key": BREVO_KEY},
        json={"email": known, "listIds": [12, NEWSLETTER]},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    cases = {
        "sem-uri@example.com": (DISCOVERY, "Whatever it is called", {10}),
        known: (DEMO_URI, "Demo", {11, NEWSLETTER}),
        "sem-name@example.com": (ONBOARDING_URI, "Onboarding Call", {12, 13}),
        "sem-unmapped@example.com": (OTHER_URI, "Coffee chat", set()),
    }
    for i, (email, (uri, name, _)) in enumerate(cases.items()):
        brevo.deliver(
            p.invitee_created(
                email=email, invitee_uri=inv("MAP", i), event_type_uri=uri, event_type_name=name
            )
        )
    for email, (_, name, lists) in cases.items():
        assert brevo.lists(email) == lists, email
        assert brevo.attributes(email)["CALENDLY_EVENT_TYPE"] == name
        assert brevo.event_names(email) == ["calendly_invitee_created"]
    # The managed list added by hand was unlinked (the connector owns managed lists); the
    # newsletter list was never named in a request.
    [unlink] = [r for r in brevo.requests_about(known) if r["method"] == "PUT"]
    assert unlink["status"] == 204
    assert set(unlink["body"]["unlinkListIds"]) == MANAGED - {11}


def test_created_with_old_invitee_is_a_reschedule_event(brevo: Connector) -> None:
    email = "sem-moved@example.com"
    _old_cancel, new_create = p.reschedule_pair(
        email=email,
        old_invitee_uri=inv("RS", 1),
        new_invitee_uri=inv("RS", 2),
        new_start="2030-02-03T10:00:00.000000Z",
    )
    brevo.deliver(new_create)
    assert brevo.event_names(email) == ["calendly_invitee_rescheduled"]
    [event] = brevo.events(email)
    assert event["event_properties"]["old_invitee"] == inv("RS", 1)
    assert event["event_properties"]["rescheduled"] == "true"
    assert brevo.attributes(email)["BOOKING_STATUS"] == "booked"
    assert brevo.attributes(email)["MEETING_DATE"] == "2030-02-03"
    assert brevo.lists(email) == {10}


# --- invitee.canceled --------------------------------------------------------------------------
def test_cancel_without_reschedule_is_a_cancellation_with_list_moves_and_event(
    brevo: Connector,
) -> None:
    email = "sem-cancel@example.com"
    brevo.deliver(p.invitee_created(email=email, invitee_uri=inv("CA")))
    assert brevo.lists(email) == {10}
    brevo.deliver(
        p.invitee_canceled(email=email, invitee_uri=inv("CA"), reason="Found another vendor")
    )

    attributes = brevo.attributes(email)
    assert attributes["BOOKING_STATUS"] == "cancelled"
    assert attributes["MEETING_DATE"] == "2030-01-10"
    # list_moves.on_cancel: out of the event type's list 10, into the win-back list 20.
    assert brevo.lists(email) == {20}
    assert brevo.event_names(email) == ["calendly_invitee_created", "calendly_invitee_canceled"]
    props = brevo.events(email)[1]["event_properties"]
    assert props["cancel_reason"] == "Found another vendor"
    assert props["canceler_type"] == "invitee"
    assert props["invitee_status"] == "canceled"
    assert brevo.events(email)[1]["event_date"] == "2030-01-05T09:00:00.000Z"


def test_cancel_leaves_the_contact_booked_while_another_booking_is_active(
    brevo: Connector,
) -> None:
    email = "sem-two@example.com"
    brevo.deliver(
        p.invitee_created(email=email, invitee_uri=inv("TWO", 1)),
        p.invitee_created(
            email=email,
            invitee_uri=inv("TWO", 2),
            event_type_uri=DEMO_URI,
            event_type_name="Demo",
            start_time="2030-03-01T12:00:00.000000Z",
            created_at="2030-01-02T10:00:00.000000Z",
        ),
        p.invitee_canceled(email=email, invitee_uri=inv("TWO", 1)),
    )
    attributes = brevo.attributes(email)
    assert attributes["BOOKING_STATUS"] == "booked"
    assert attributes["MEETING_DATE"] == "2030-03-01"
    assert attributes["CALENDLY_EVENT_TYPE"] == "Demo"
    assert brevo.lists(email) == {10, 11}  # no win-back move: the contact is still booked
    # The cancellation itself is real, so its event fires (automations can check the status).
    assert brevo.event_names(email) == [
        "calendly_invitee_created",
        "calendly_invitee_created",
        "calendly_invitee_canceled",
    ]


def test_cancel_with_rescheduled_true_is_no_cancellation_and_sends_no_event(
    brevo: Connector,
) -> None:
    email = "sem-halfmove@example.com"
    old_cancel, _new = p.reschedule_pair(
        email=email, old_invitee_uri=inv("HM", 1), new_invitee_uri=inv("HM", 2)
    )
    brevo.deliver(p.invitee_created(email=email, invitee_uri=inv("HM", 1)), old_cancel)
    attributes = brevo.attributes(email)
    # Only the old half is known: "rescheduled", never "cancelled"; no win-back move.
    assert attributes["BOOKING_STATUS"] == "rescheduled"
    assert brevo.lists(email) == {10}
    assert brevo.event_names(email) == ["calendly_invitee_created"]


def test_a_reschedule_pair_gives_the_same_booked_state_in_either_order(brevo: Connector) -> None:
    final: dict[str, tuple[dict[str, Any], set[int], list[str]]] = {}
    for order, email in (
        ("cancel-first", "sem-cf@example.com"),
        ("create-first", "sem-nf@example.com"),
    ):
        tag = "CF" if order == "cancel-first" else "NF"
        old_cancel, new_create = p.reschedule_pair(
            email=email,
            old_invitee_uri=inv(tag, 1),
            new_invitee_uri=inv(tag, 2),
            name="Grace Hopper",
            questions=[("Company", "Navy")],
            new_start="2030-01-24T09:00:00.000000Z",
        )
        first = p.invitee_created(
            email=email,
            invitee_uri=inv(tag, 1),
            name="Grace Hopper",
            questions=[("Company", "Navy")],
        )
        halves = [old_cancel, new_create] if order == "cancel-first" else [new_create, old_cancel]
        brevo.deliver(first, *halves)
        final[order] = (brevo.attributes(email), brevo.lists(email), brevo.event_names(email))

    assert final["cancel-first"] == final["create-first"]
    attributes, lists, events = final["cancel-first"]
    assert attributes["BOOKING_STATUS"] == "booked"
    assert attributes["MEETING_DATE"] == "2030-01-24"
    assert attributes["COMPANY"] == "Navy"
    assert lists == {10}
    assert events == ["calendly_invitee_created", "calendly_invitee_rescheduled"]


# --- no-shows ----------------------------------------------------------------------------------
def test_no_show_sets_no_show_with_one_event_and_its_deletion_sets_it_back(
    brevo: Connector,
) -> None:
    email = "sem-noshow@example.com"
    mark = p.no_show_uri("SEMNOSHOW1")
    created = p.no_show_created(email=email, invitee_uri=inv("NS"), no_show_uri=mark)
    brevo.deliver(p.invitee_created(email=email, invitee_uri=inv("NS")), created, created)
    assert brevo.attributes(email)["BOOKING_STATUS"] == "no_show"
    assert brevo.lists(email) == {10}

    brevo.deliver(p.no_show_deleted(email=email, invitee_uri=inv("NS"), no_show_uri=mark))
    assert brevo.attributes(email)["BOOKING_STATUS"] == "booked"
    assert brevo.event_names(email) == ["calendly_invitee_created", "calendly_invitee_no_show"]
    no_show = brevo.events(email)[1]
    assert no_show["event_properties"]["no_show_uri"] == mark
    assert no_show["event_date"] == "2030-01-10T16:00:00.000Z"


# --- routing forms and events the connector does not map -----------------------------------
def test_routing_form_submission_upserts_the_submitter_when_switched_on(brevo: Connector) -> None:
    email = "sem-lead@example.com"
    brevo.deliver(
        p.routing_form_submission(
            submission_uri=f"{p.API}/routing_form_submissions/SEMRFS0001",
            answers=[
                ("What is your email?", email),
                ("Name", "Lin Lead"),
                ("Company", "Leads & Co"),
                ("Phone", "+31 20 123 4567"),
            ],
            tracking={"utm_source": "ads"},
        )
    )
    assert brevo.attributes(email) == {
        "FIRSTNAME": "Lin",
        "LASTNAME": "Lead",
        "COMPANY": "Leads & Co",
        "SMS": "+31201234567",
        "UTM_SOURCE": "ads",
    }
    assert brevo.lists(email) == set()  # a submission is not a booking
    assert brevo.event_names(email) == []  # no routing-form event unless one is named


def test_event_type_created_is_ignored_not_dead_lettered(brevo: Connector) -> None:
    doc = p.event_type_created()
    before = len(brevo.fake.snapshot()["requests"])
    brevo.deliver(doc)
    event_id = event_from_dict(doc).identity.event_id
    assert brevo.db("SELECT status FROM processed_events WHERE event_id = ?", event_id) == [
        ("ignored",)
    ]
    assert len(brevo.fake.snapshot()["requests"]) == before  # no Brevo call at all


# --- exactly once, groups, SMS conflicts ---------------------------------------------------------
def test_duplicate_deliveries_change_nothing(brevo: Connector) -> None:
    email = "sem-dup@example.com"
    created = p.invitee_created(email=email, invitee_uri=inv("DUP"))
    canceled = p.invitee_canceled(email=email, invitee_uri=inv("DUP"))
    brevo.deliver(created, created, canceled, created, canceled)
    upserts = [
        r
        for r in brevo.requests_about(email)
        if r["method"] == "POST" and r["path"] == "/v3/contacts"
    ]
    assert len(upserts) == 2  # one per logical event
    assert brevo.event_names(email) == ["calendly_invitee_created", "calendly_invitee_canceled"]
    assert brevo.attributes(email)["BOOKING_STATUS"] == "cancelled"
    assert brevo.lists(email) == {20}


def test_group_event_invitees_become_separate_contacts(brevo: Connector) -> None:
    emails = ["sem-guest-a@example.com", "sem-guest-b@example.com", "sem-guest-c@example.com"]
    brevo.deliver(*p.group_event(emails, event="SEMGROUP01"))
    for i, email in enumerate(emails):
        assert brevo.attributes(email)["FIRSTNAME"] == "Guest"
        assert brevo.attributes(email)["LASTNAME"] == str(i)
        assert brevo.attributes(email)["BOOKING_STATUS"] == "booked"
        assert brevo.attributes(email)["CALENDLY_EVENT_TYPE"] == "Group Webinar"
        assert brevo.lists(email) == {10}
        [event] = brevo.events(email)
        assert event["event_properties"]["invitee_uri"] == p.invitee_uri(
            "SEMGROUP01", f"GUEST{i:04d}"
        )


def test_a_phone_already_used_by_another_contact_goes_to_phone_text(brevo: Connector) -> None:
    first, second = "sem-phone-1@example.com", "sem-phone-2@example.com"
    for i, email in enumerate((first, second)):
        brevo.deliver(
            p.invitee_created(
                email=email,
                invitee_uri=inv("PH", i),
                questions=[("Phone", "+31 6 8765 4321")],
            )
        )
    assert brevo.attributes(first)["SMS"] == "+31687654321"
    saved = brevo.attributes(second)
    assert "SMS" not in saved
    assert saved["PHONE_TEXT"] == "+31687654321"
    assert saved["BOOKING_STATUS"] == "booked"
    assert brevo.event_names(second) == ["calendly_invitee_created"]
    conflicts = [
        r
        for r in brevo.requests_about(second)
        if r["path"] == "/v3/contacts" and r["status"] == 400
    ]
    assert len(conflicts) == 1  # retried once without SMS, not dead-lettered


# --- simulate --same-booking: the operator's rehearsal acts on the booking it made ---------------
def _simulate(brevo: Connector, memory: Path, *args: str) -> str:
    result = run_cli(
        ["simulate", *args, "--url", brevo.url, "--key", SIGNING_KEY],
        {"CONNECTOR_DATA_DIR": str(memory), "REDIS_URL": "", "DATABASE_URL": ""},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(brevo._drained, timeout=30, interval=0.05, what="an empty queue")
    return result.stdout


def test_simulate_same_booking_cancels_marks_and_moves_the_booking_it_created(
    brevo: Connector, tmp_path: Path
) -> None:
    memory = tmp_path / "simulate-data"
    cancelled, moved = "sim-cancel@example.com", "sim-move@example.com"
    for email in (cancelled, moved):
        _simulate(brevo, memory, "invitee.created", "--email", email)
    assert brevo.attributes(cancelled)["BOOKING_STATUS"] == "booked"

    _simulate(brevo, memory, "invitee_no_show.created", "--same-booking", "--email", cancelled)
    assert brevo.attributes(cancelled)["BOOKING_STATUS"] == "no_show"
    _simulate(brevo, memory, "invitee_no_show.deleted", "--same-booking", "--email", cancelled)
    assert brevo.attributes(cancelled)["BOOKING_STATUS"] == "booked"
    _simulate(brevo, memory, "invitee.canceled", "--same-booking", "--email", cancelled)
    assert brevo.attributes(cancelled)["BOOKING_STATUS"] == "cancelled"
    assert brevo.event_names(cancelled) == [
        "calendly_invitee_created",
        "calendly_invitee_no_show",
        "calendly_invitee_canceled",
    ]

    before = brevo.attributes(moved)["MEETING_DATE"]
    out = _simulate(brevo, memory, "invitee.created", "--same-booking", "--email", moved)
    assert "invitee.canceled" in out and "invitee.created" in out
    after = brevo.attributes(moved)
    assert after["BOOKING_STATUS"] == "booked", "a reschedule is never a cancellation"
    assert after["MEETING_DATE"] > before
    assert brevo.event_names(moved) == ["calendly_invitee_created", "calendly_invitee_rescheduled"]


def test_simulate_same_booking_without_a_booking_says_what_to_run_first(
    connector: Connector, tmp_path: Path
) -> None:
    result = run_cli(
        ["simulate", "invitee.canceled", "--same-booking", "--email", "nobody@example.com"],
        {"CONNECTOR_DATA_DIR": str(tmp_path), "REDIS_URL": "", "DATABASE_URL": ""},
    )
    assert result.returncode == 2
    assert "simulate invitee.created --email nobody@example.com" in result.stderr
    assert "Traceback" not in result.stderr
