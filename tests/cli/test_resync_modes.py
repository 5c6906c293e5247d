"""``resync --events`` (held custom events: listed, sent once with ``--send``) and ``resync
--check`` (drift) against the fake Brevo over HTTP, on a store filled during a dry run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from calendly_brevo.brevo.client import BrevoClient, make_http_client
from calendly_brevo.config import load_settings
from tests.cli.test_resync_brevo import ADA, BOB, fake, invoke, live
from tests.fakes.brevo import FakeBrevoServer

__all__ = ["fake", "live"]  # fixtures


@contextmanager
def by_hand(env: dict[str, str]) -> Iterator[BrevoClient]:
    """A Brevo client as a person at Brevo's UI would be: not the connector."""
    settings = load_settings(None, env=env)
    with make_http_client(settings) as http:
        yield BrevoClient.from_settings(settings, http=http)


def events_sent(fake: FakeBrevoServer) -> list[tuple[str, str]]:
    return sorted(
        (e["event_name"], e["identifiers"]["email_id"]) for e in fake.snapshot()["events"]
    )


def test_held_events_are_listed_and_sent_once_only_with_send(
    live: dict[str, str], fake: FakeBrevoServer
) -> None:
    listed = invoke(live, "resync", "--events")
    assert listed.exit_code == 0, listed.output
    assert "2 held custom event(s)" in listed.output and "--send" in listed.output
    doc = json.loads(invoke(live, "resync", "--events", "--since", "1d", "--json").stdout)
    assert doc["count"] == 2
    assert {e["email"] for e in doc["events"]} == {ADA, BOB}
    assert {e["brevo_event"] for e in doc["events"]} == {"calendly_invitee_created"}
    assert fake.snapshot()["events"] == []  # listing sends nothing

    no_since = invoke(live, "resync", "--events", "--send")
    assert no_since.exit_code == 2 and "--since" in no_since.output
    assert fake.snapshot()["events"] == []

    sent = invoke(live, "resync", "--events", "--since", "1d", "--send", "--json")
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout)["sent"] == 2
    expected = [("calendly_invitee_created", ADA), ("calendly_invitee_created", BOB)]
    assert events_sent(fake) == expected
    again = invoke(live, "resync", "--events", "--since", "1d", "--send")
    assert again.exit_code == 0 and "held custom events 0" in again.output
    assert events_sent(fake) == expected
    assert invoke(live, "resync").exit_code == 0  # contacts: still no event from plain resync
    assert events_sent(fake) == expected
    assert fake.snapshot()["violations"] == []


def test_modes_refuse_flags_that_do_not_go_with_them(live: dict[str, str]) -> None:
    for args in (
        ["--events", "--check"],
        ["--events", "--all"],
        ["--check", "--dry-run"],
        ["--send"],
        ["--since", "2d"],
        ["--events", "--since", "soon"],
    ):
        result = invoke(live, "resync", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_check_finds_a_hand_edited_a_hand_deleted_and_a_hand_listed_contact(
    live: dict[str, str], fake: FakeBrevoServer
) -> None:
    assert invoke(live, "resync").exit_code == 0
    clean = invoke(live, "resync", "--check")
    assert clean.exit_code == 0, clean.output
    assert "checked 2, drifted 0" in clean.output
    before = len(fake.snapshot()["requests"])

    with by_hand(live) as brevo:
        brevo.update_contact(ADA, {"BOOKING_STATUS": "vip"}, unlink_list_ids=[10])
        brevo.add_to_list(11, [ADA])  # a list the config owns, not added by the connector
        brevo.add_to_list(99, [ADA])  # a list the config does not name: not drift
        brevo.delete_contact(BOB)
    before = len(fake.snapshot()["requests"])
    result = invoke(live, "resync", "--check", "--json")
    assert result.exit_code == 1, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    assert (doc["checked"], doc["drifted"], doc["failures"]) == (2, 2, 0)
    drift = {d["email"]: d for d in doc["drift"]}
    assert drift[ADA]["attributes"] == {"BOOKING_STATUS": {"pushed": "booked", "brevo": "vip"}}
    assert (drift[ADA]["lists_missing"], drift[ADA]["lists_extra"]) == ([10], [11])
    assert drift[ADA]["deleted"] is False and drift[BOB]["deleted"] is True
    requests = fake.snapshot()["requests"][before:]
    assert {(q["method"], q["status"]) for q in requests} <= {("GET", 200), ("GET", 404)}
    assert len(requests) == 2  # one read per contact, nothing written

    one = invoke(live, "resync", "--check", "--email", BOB)
    assert one.exit_code == 1 and "deleted in Brevo" in one.output and ADA not in one.output
    assert invoke(live, "resync", "--all").exit_code == 0  # the repair the check names
    repaired = invoke(live, "resync", "--check", "--json")
    doc = json.loads(repaired.stdout)
    assert repaired.exit_code == 1 and doc["drifted"] == 1  # list 11 is still extra:
    assert doc["drift"][0]["lists_extra"] == [11]  # resync never unlinks a hand-added list


def test_json_output_stays_json_when_brevo_answers_429(
    live: dict[str, str], fake: FakeBrevoServer
) -> None:
    """The client's warnings (a 429 pauses the family) are log lines on stderr, never in the
    summary a script parses from stdout."""
    fake.inject("429", path=r"^/v3/contacts$", count=1)
    result = invoke(live, "resync", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["changed"], summary["failures"]) == (2, 0)
    assert "rate_limited" not in result.stdout
