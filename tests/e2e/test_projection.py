"""Brevo as a projection of the stored state (DESIGN invariant 7), through real processes: an
embedded ``calendly-brevo run`` and the ``resync`` and ``forget`` commands against the fake
Brevo (every request checked against Brevo's OpenAPI spec).

One story: a trial in dry run → the key is set → ``resync --all`` gives every contact its
attributes and lists and fires no custom event, and a second ``resync`` makes no call → an event
type moves to another list → ``resync`` moves the contacts, unlinks the old list and leaves a list
the connector never added → ``forget`` deletes the contact, and the person's past events,
redelivered, do not bring them back (a new booking does)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from calendly_brevo.brevo.setup import STANDARD, required_attributes
from calendly_brevo.config import load_settings
from calendly_brevo.queueing import sqlite_queue_path
from calendly_brevo.signature import HEADER, sign
from tests import payloads as p
from tests.conftest import SIGNING_KEY
from tests.e2e.procs import Proc, free_port, run_cli, wait_for, wait_http
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo

pytestmark = pytest.mark.e2e

BREVO_KEY = "xkeysib-projection-0123456789"
ADA, BOB = "proj-ada@example.com", "proj-bob@example.com"
ADA_URI = p.invitee_uri("PROJEV1", "PROJINV1")
BOB_URI = p.invitee_uri("PROJEV2", "PROJINV2")
DEMO_URI = p.event_type_uri("PROJDEMO0001")
NEWSLETTER = 30


def config(discovery_list: int, *, enabled: bool = True, auto_resync: bool = False) -> str:
    return f"""
connectors:
  calendly:
    enabled: {str(enabled).lower()}
    sync:
      auto_resync: {str(auto_resync).lower()}
    event_mapping:
      discovery_call:
        list_id: {discovery_list}
        event_type_uri: "{p.DEFAULT_EVENT_TYPE_URI}"
      demo:
        list_id: 11
        event_type_uri: "{DEMO_URI}"
field_mapping:
  email: email
  name: FIRSTNAME
  last_name: LASTNAME
  event_type_name: CALENDLY_EVENT_TYPE
  scheduled_at: MEETING_DATE
  status: BOOKING_STATUS
"""


class Story:
    def __init__(self, tmp: Path, fake: FakeBrevoServer) -> None:
        self.tmp, self.fake = tmp, fake
        self.cfg = tmp / "config.yaml"
        self.cfg.write_text(config(10))
        self.port = free_port()
        self.env = {
            "CONNECTOR_CONFIG": str(self.cfg),
            "CONNECTOR_DATA_DIR": str(tmp / "data"),
            "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
            "BREVO_API_KEY": "",
            "BREVO_API_URL": fake.base_url,
            "PORT": str(self.port),
            "REDIS_URL": "",
            "DATABASE_URL": "",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/calendly"

    def run(self) -> Proc:
        proc = Proc(["run"], self.env, self.tmp / "run.log")
        wait_http(f"http://127.0.0.1:{self.port}/readyz", proc)
        return proc

    def deliver(self, proc: Proc, *docs: dict[str, Any]) -> None:
        for doc in docs:
            raw = json.dumps(doc).encode()
            headers = {HEADER: sign(SIGNING_KEY, raw, int(time.time()))}
            r = httpx.post(self.url, content=raw, headers=headers, timeout=10)
            assert r.status_code == 202, r.text
            wait_for(lambda: self._drained(proc), timeout=30, interval=0.05, what="empty queue")

    def _drained(self, proc: Proc) -> bool:
        assert proc.alive(), proc.log()
        with sqlite3.connect(sqlite_queue_path(self.tmp / "data"), timeout=10) as conn:
            (n,) = conn.execute("SELECT count(*) FROM queue_messages").fetchone()
        return int(n) == 0

    def statuses(self) -> list[tuple[str, str | None]]:
        with sqlite3.connect(self.tmp / "data" / "calendly-brevo.db", timeout=10) as conn:
            rows = conn.execute("SELECT status, last_error FROM processed_events").fetchall()
        return sorted((str(s), e) for s, e in rows)

    def cli(self, *args: str) -> Any:
        result = run_cli(list(args), self.env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def resync(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("resync", "--json", *args).stdout))

    def contacts(self) -> dict[str, dict[str, Any]]:
        return {c["email"]: c for c in self.fake.snapshot()["contacts"]}

    def requests(self) -> int:
        return len(self.fake.snapshot()["requests"])


@pytest.fixture
def story(tmp_path: Path) -> Iterator[Story]:
    with running_fake_brevo(
        api_key=BREVO_KEY, lists={10: "Discovery", 11: "Demo", 12: "Moved", NEWSLETTER: "News"}
    ) as fake:
        story = Story(tmp_path, fake)
        for name, kind in required_attributes(load_settings(story.cfg, env={})).items():
            if name not in STANDARD:
                fake.add_attribute(name, kind)
        yield story
        snap = fake.snapshot()
        assert snap["violations"] == [] and snap["ignored_attributes"] == []


def test_dry_run_then_resync_then_a_moved_list_then_forget(story: Story) -> None:
    ada_created = p.invitee_created(email=ADA, invitee_uri=ADA_URI)
    bob_created = p.invitee_created(
        email=BOB, invitee_uri=BOB_URI, event_type_uri=DEMO_URI, event_type_name="Demo"
    )
    proc = story.run()  # no key: a dry run
    try:
        story.deliver(proc, ada_created, bob_created)
    finally:
        proc.stop()
    assert story.statuses() == [("dry_run", None), ("dry_run", None)]
    assert story.requests() == 0

    # The key is set: resync brings every contact in, with no custom event.
    story.env["BREVO_API_KEY"] = BREVO_KEY
    first = story.resync("--all")
    assert (first["checked"], first["changed"], first["failures"]) == (2, 2, 0)
    contacts = story.contacts()
    assert contacts[ADA]["attributes"]["BOOKING_STATUS"] == "booked"
    assert contacts[BOB]["attributes"]["CALENDLY_EVENT_TYPE"] == "Demo"
    assert (set(contacts[ADA]["listIds"]), set(contacts[BOB]["listIds"])) == ({10}, {11})
    assert story.fake.snapshot()["events"] == []
    before = story.requests()
    assert story.resync()["calls"] == 0
    assert story.requests() == before

    # A list the connector never added, then the event type moves to list 12.
    r = httpx.post(
        f"{story.fake.base_url}/contacts/lists/{NEWSLETTER}/contacts/add",
        json={"emails": [ADA]},
        headers={"api-key": BREVO_KEY},
    )
    assert r.status_code == 201, r.text
    story.cfg.write_text(config(12))
    moved = story.resync()
    assert (moved["changed"], moved["failures"]) == (1, 0)
    contacts = story.contacts()
    assert set(contacts[ADA]["listIds"]) == {12, NEWSLETTER}
    assert set(contacts[BOB]["listIds"]) == {11}
    assert story.fake.snapshot()["events"] == []

    # forget: the Brevo contact goes; the person's past events do not bring it back.
    out = story.cli("forget", "--email", ADA, "--yes").stdout
    assert "deleted the Brevo contact" in out
    assert ADA not in story.contacts()
    proc = story.run()
    try:
        story.deliver(proc, ada_created, p.invitee_canceled(email=ADA, invitee_uri=ADA_URI))
        assert ADA not in story.contacts()
        assert ("suppressed", "forgotten") in story.statuses()
        assert story.resync()["calls"] == 0
        story.deliver(
            proc, p.invitee_created(email=ADA, invitee_uri=p.invitee_uri("PROJEV9", "PROJINV9"))
        )
        assert story.contacts()[ADA]["attributes"]["BOOKING_STATUS"] == "booked"
    finally:
        proc.stop()
