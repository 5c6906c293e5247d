"""``calendly-brevo preview``: one payload's Brevo effects under the config, touching nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from calendly_brevo.simulate import example
from cli.main import cli

EVENT_TYPE = "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2"  # Calendly's examples'
CONFIG = f"""
connectors:
  calendly:
    event_mapping:
      quick:
        list_id: 7
        event_type_uri: "{EVENT_TYPE}"
      other:
        list_id: 8
brevo:
  list_moves:
    on_cancel: {{add: [20], remove: [7]}}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    return {
        "CONNECTOR_CONFIG": str(cfg),
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "",
        "DATABASE_URL": "",
    }


def preview(env: dict[str, str], tmp_path: Path, doc: Any, *args: str) -> Any:
    path = tmp_path / "payload.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return CliRunner().invoke(cli, ["preview", str(path), *args], env=env)


def test_a_booking_shows_its_attributes_lists_and_custom_event_and_writes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = preview(env, tmp_path, example("invitee.created"), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    contact = out["contact"]
    assert contact["email"] == "test@example.com"
    assert contact["attributes"]["BOOKING_STATUS"] == "booked"
    assert contact["list_ids"] == [7]
    assert contact["unlink_list_ids"] == [8, 20]
    assert out["event"]["event_name"] == "calendly_invitee_created"
    assert out["event"]["properties"]["connector_event_id"] == out["event_id"]
    assert not (tmp_path / "data").exists(), "preview must not create the data directory"

    text = preview(env, tmp_path, example("invitee.created"))
    assert text.exit_code == 0, text.output
    assert "upsert test@example.com" in text.output
    assert "calendly_invitee_created" in text.output


def test_a_cancellation_moves_lists_and_a_rescheduled_cancel_sends_no_event(
    env: dict[str, str], tmp_path: Path
) -> None:
    doc = example("invitee.canceled")
    out = json.loads(preview(env, tmp_path, doc, "--json").output)
    assert out["contact"]["attributes"]["BOOKING_STATUS"] == "cancelled"
    assert out["contact"]["list_ids"] == [20]
    assert out["event"]["event_name"] == "calendly_invitee_canceled"

    doc["payload"]["rescheduled"] = True
    out = json.loads(preview(env, tmp_path, doc, "--json").output)
    assert out["event"] is None
    assert any("reschedule is not a cancellation" in n for n in out["notes"])


def test_a_sample_webhook_data_answer_wrapped_in_resource_is_accepted(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = preview(env, tmp_path, {"resource": example("invitee_no_show.created")}, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["contact"]["attributes"]["BOOKING_STATUS"] == "no_show"
    assert out["event"]["event_name"] == "calendly_invitee_no_show"


def test_switches_that_are_off_are_named_instead_of_an_effect(
    env: dict[str, str], tmp_path: Path
) -> None:
    Path(env["CONNECTOR_CONFIG"]).write_text(
        CONFIG.replace("  calendly:\n", "  calendly:\n    sync:\n      events: false\n", 1)
    )
    out = json.loads(preview(env, tmp_path, example("invitee.created"), "--json").output)
    assert out["contact"] is not None
    assert out["event"] is None
    assert any("calendly.sync.events" in n for n in out["notes"])


def test_an_unhandled_event_is_shown_as_ignored(env: dict[str, str], tmp_path: Path) -> None:
    out = json.loads(preview(env, tmp_path, example("event_type.created"), "--json").output)
    assert out["contact"] is None and out["event"] is None
    assert "not handled" in out["notes"][0]


def test_a_payload_the_worker_would_dead_letter_says_why_and_exits_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    doc = example("invitee.created")
    del doc["payload"]["email"]
    result = preview(env, tmp_path, doc)
    assert result.exit_code == 1
    assert "dead-letter" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "reason"),
    [("not json", "not JSON"), ("[1, 2]", "not a JSON object"), ('{"payload": {}}', "no 'event'")],
)
def test_a_file_that_is_no_webhook_body_is_a_usage_error_with_the_reason(
    env: dict[str, str], tmp_path: Path, content: str, reason: str
) -> None:
    result = preview(env, tmp_path, content)
    assert result.exit_code == 2
    assert reason in result.output
