"""Brevo as a projection, continued (issue 15's "done when"), through real processes (an
embedded ``calendly-brevo run``, the ``resync`` command) and the fake Brevo:

- the connector switched off → a cancellation and a no-show arrive → switched on → ``resync``:
  the contacts are cancelled / no-show, exactly the held custom events are listed by ``resync
  --events`` and sent once by ``--send`` (a second ``--send`` sends nothing);
- ``resync --check`` finds a contact edited and one deleted by hand, and writes nothing;
- ``sync.auto_resync``: after a dry run, the worker brings the contacts to Brevo by itself.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests import payloads as p
from tests.e2e.procs import run_cli, wait_for
from tests.e2e.test_projection import (
    ADA,
    ADA_URI,
    BOB,
    BOB_URI,
    BREVO_KEY,
    DEMO_URI,
    Story,
    config,
    story,
)

pytestmark = pytest.mark.e2e
__all__ = ["story"]  # the fixture

CREATED = "calendly_invitee_created"


def fired(story: Story) -> list[tuple[str, str]]:
    return sorted(
        (e["event_name"], e["identifiers"]["email_id"]) for e in story.fake.snapshot()["events"]
    )


def bookings() -> tuple[dict[str, Any], dict[str, Any]]:
    ada = p.invitee_created(email=ADA, invitee_uri=ADA_URI)
    bob = p.invitee_created(
        email=BOB, invitee_uri=BOB_URI, event_type_uri=DEMO_URI, event_type_name="Demo"
    )
    return ada, bob


def live_bookings(story: Story) -> None:
    story.env["BREVO_API_KEY"] = BREVO_KEY
    proc = story.run()
    try:
        story.deliver(proc, *bookings())
    finally:
        proc.stop()
    assert fired(story) == [(CREATED, ADA), (CREATED, BOB)]


def test_switched_off_then_on_resync_cancels_and_the_held_events_are_sent_once(
    story: Story,
) -> None:
    live_bookings(story)
    story.cfg.write_text(config(10, enabled=False))
    proc = story.run()
    try:
        story.deliver(
            proc,
            p.invitee_canceled(email=ADA, invitee_uri=ADA_URI),
            p.no_show_created(
                email=BOB, invitee_uri=BOB_URI, event_type_uri=DEMO_URI, event_type_name="Demo"
            ),
        )
    finally:
        proc.stop()
    assert story.statuses().count(("suppressed", "connector_disabled")) == 2
    contacts = story.contacts()
    assert {c["attributes"]["BOOKING_STATUS"] for c in contacts.values()} == {"booked"}

    story.cfg.write_text(config(10))  # switched on again
    summary = story.resync()
    assert (summary["changed"], summary["failures"]) == (2, 0)
    contacts = story.contacts()
    assert contacts[ADA]["attributes"]["BOOKING_STATUS"] == "cancelled"
    assert contacts[BOB]["attributes"]["BOOKING_STATUS"] == "no_show"
    assert fired(story) == [(CREATED, ADA), (CREATED, BOB)]  # resync fires nothing

    held = json.loads(story.cli("resync", "--events", "--since", "1h", "--json").stdout)
    assert [(e["brevo_event"], e["email"], e["status"]) for e in held["events"]] == [
        ("calendly_invitee_canceled", ADA, "suppressed"),
        ("calendly_invitee_no_show", BOB, "suppressed"),
    ]
    assert fired(story) == [(CREATED, ADA), (CREATED, BOB)]  # listing fires nothing
    sent = json.loads(story.cli("resync", "--events", "--since", "1h", "--send", "--json").stdout)
    assert (sent["sent"], sent["failures"]) == (2, 0)
    everything = [
        ("calendly_invitee_canceled", ADA),
        (CREATED, ADA),
        (CREATED, BOB),
        ("calendly_invitee_no_show", BOB),
    ]
    assert fired(story) == sorted(everything)
    again = json.loads(story.cli("resync", "--events", "--since", "1h", "--send", "--json").stdout)
    assert (again["listed"], again["sent"]) == (0, 0)
    assert fired(story) == sorted(everything)
    assert story.resync()["calls"] == 0


def test_the_drift_check_finds_hand_edits_and_deletions_and_writes_nothing(story: Story) -> None:
    live_bookings(story)
    clean = run_cli(["resync", "--check"], story.env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    headers = {"api-key": BREVO_KEY}
    base = story.fake.base_url
    edit = {"attributes": {"BOOKING_STATUS": "vip"}}
    assert httpx.put(f"{base}/contacts/{ADA}", json=edit, headers=headers).status_code == 204
    assert httpx.delete(f"{base}/contacts/{BOB}", headers=headers).status_code == 204
    before = story.requests()

    found = run_cli(["resync", "--check", "--json"], story.env)
    assert found.returncode == 1, found.stdout + found.stderr
    drift = {d["email"]: d for d in json.loads(found.stdout)["drift"]}
    assert drift[ADA]["attributes"]["BOOKING_STATUS"] == {"pushed": "booked", "brevo": "vip"}
    assert drift[BOB]["deleted"] is True
    reads = story.fake.snapshot()["requests"][before:]
    assert [q["method"] for q in reads] == ["GET", "GET"]  # one read each, nothing written

    story.resync("--all")
    assert story.contacts()[ADA]["attributes"]["BOOKING_STATUS"] == "booked"
    assert BOB in story.contacts()
    assert run_cli(["resync", "--check"], story.env).returncode == 0


def test_auto_resync_brings_a_dry_runs_contacts_to_brevo_in_the_background(story: Story) -> None:
    proc = story.run()  # no key: a dry run
    try:
        story.deliver(proc, *bookings())
    finally:
        proc.stop()
    assert story.contacts() == {}
    story.env["BREVO_API_KEY"] = BREVO_KEY
    story.cfg.write_text(config(10, auto_resync=True))
    proc = story.run()
    try:
        wait_for(lambda: len(story.contacts()) == 2, timeout=30, interval=0.2, what="sweep")
        wait_for(lambda: "auto_resync_done" in proc.log(), timeout=30, what="the sweep's end")
    finally:
        proc.stop()
    contacts = story.contacts()
    assert set(contacts[ADA]["listIds"]) == {10} and set(contacts[BOB]["listIds"]) == {11}
    assert fired(story) == []
    assert story.resync()["calls"] == 0
