"""resync and forget against the fake Brevo over HTTP (every request checked against Brevo's
OpenAPI spec): dry run → key set → resync; a moved event type; forget deletes the contact."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cli.main import cli
from tests import payloads
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo
from tests.fakes.brevo_records import Attribute
from tests.worker.test_pipeline import make_pipeline

ADA, BOB = "ada@example.com", "bob@example.com"
ATTRIBUTES = [Attribute(n) for n in ("BOOKING_STATUS", "MEETING_DATE", "CALENDLY_EVENT_TYPE")]


@pytest.fixture
def fake() -> Iterator[FakeBrevoServer]:
    with running_fake_brevo(lists=[10, 11, 12, 99], attributes=ATTRIBUTES) as server:
        yield server


def write_config(path: Path, list_id: int) -> None:
    mapping = payloads.SEED_CONFIG["connectors"]["calendly"]["event_mapping"]
    doc = {
        **payloads.SEED_CONFIG,
        "connectors": {
            "calendly": {
                "event_mapping": {**mapping, "discovery_call": {**mapping["discovery_call"]}}
            }
        },
    }
    doc["connectors"]["calendly"]["event_mapping"]["discovery_call"]["list_id"] = list_id
    doc["field_mapping"] = {**doc["field_mapping"], "questions_and_answers": {}}
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture
def live(tmp_path: Path, env: dict[str, str], fake: FakeBrevoServer) -> dict[str, str]:
    """Two bookings received during a dry run; then the key is set."""
    pipeline, brevo, services = make_pipeline(tmp_path)
    brevo.dry_run = True
    for env_ in (
        payloads.invitee_created(email=ADA),
        payloads.invitee_created(email=BOB, invitee_uri=payloads.invitee_uri("E2", "I2")),
    ):
        assert pipeline.process(payloads.body(env_).decode(), time.time()).status == "dry_run"
    services.close()
    write_config(tmp_path / "config.yaml", 10)
    return env | {
        "CONNECTOR_CONFIG": str(tmp_path / "config.yaml"),
        "BREVO_API_KEY": "xkeysib-resync-test-key-0123456789",
        "BREVO_API_URL": fake.base_url,
    }


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def requests(fake: FakeBrevoServer) -> int:
    counts = fake.snapshot()["counts"]["requests"]
    return sum(n for family in counts.values() for n in family.values())


def members(fake: FakeBrevoServer) -> dict[int, list[str]]:
    return {x["id"]: x["members"] for x in fake.snapshot()["lists"]}


def test_going_live_after_a_dry_run_resync_pushes_contacts_and_no_event(
    live: dict[str, str], fake: FakeBrevoServer
) -> None:
    result = invoke(live, "resync", "--all", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["checked"], summary["changed"], summary["failures"]) == (2, 2, 0)
    snap = fake.snapshot()
    attrs = {c["email"]: c["attributes"] for c in snap["contacts"]}
    assert attrs[ADA]["BOOKING_STATUS"] == "booked" and attrs[BOB]["BOOKING_STATUS"] == "booked"
    assert members(fake)[10] == [ADA, BOB]
    assert snap["events"] == []
    assert snap["violations"] == []
    before = requests(fake)
    again = invoke(live, "resync")
    assert again.exit_code == 0, again.output
    assert "calls 0" in again.output
    assert requests(fake) == before


def test_a_moved_event_type_moves_contacts_and_leaves_hand_added_lists(
    live: dict[str, str], fake: FakeBrevoServer, tmp_path: Path
) -> None:
    assert invoke(live, "resync").exit_code == 0
    from calendly_brevo.brevo.client import BrevoClient, make_http_client
    from calendly_brevo.config import load_settings

    settings = load_settings(None, env=live)
    with make_http_client(settings) as http:  # by hand: the connector never added list 99
        BrevoClient.from_settings(settings, http=http).add_to_list(99, [ADA])
    write_config(tmp_path / "config.yaml", 12)
    result = invoke(live, "resync")
    assert result.exit_code == 0, result.output
    lists = members(fake)
    assert (lists[10], lists[12], lists[99]) == ([], [ADA, BOB], [ADA])
    assert fake.snapshot()["events"] == []
    assert fake.snapshot()["violations"] == []


def test_forget_deletes_the_brevo_contact_and_its_past_events_do_not_bring_it_back(
    live: dict[str, str], fake: FakeBrevoServer, tmp_path: Path
) -> None:
    assert invoke(live, "resync").exit_code == 0
    result = invoke(live, "forget", "--email", ADA, "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted the Brevo contact" in result.output
    assert [c["email"] for c in fake.snapshot()["contacts"]] == [BOB]
    assert fake.snapshot()["violations"] == []
    pipeline, brevo, services = make_pipeline(tmp_path)
    try:
        late = pipeline.process(
            payloads.body(payloads.invitee_canceled(email=ADA)).decode(), time.time()
        )
        assert (late.status, late.detail) == ("suppressed", "forgotten")
        assert brevo.upserts == []
        assert services.ledger.contacts() == [BOB]
    finally:
        services.close()
    assert "calls 0" in invoke(live, "resync").output  # nothing left to bring back
    keep = invoke(live, "forget", "--email", BOB, "--yes", "--keep-brevo")
    assert "Brevo" not in keep.output.split("queued message(s).")[-1]
    assert [c["email"] for c in fake.snapshot()["contacts"]] == [BOB]
