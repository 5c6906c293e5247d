"""Logs: JSON lines (or readable lines in a terminal), secrets always redacted, emails masked
unless ``debug: true``, debug lines with ``log_level: verbose``, full webhook payloads only with
``log_webhooks: true``, and one line per processed event with its id, name, outcome and duration.

Each test configures logging for real (:func:`configure_logging`) and reads what reaches stderr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from calendly_brevo.config import Settings, load_settings
from calendly_brevo.crypto import generate_key
from calendly_brevo.errors import TransientError
from calendly_brevo.logs import REDACTOR, Redactor, configure_logging, get_logger
from calendly_brevo.pii import mask_email
from receiver.app import create_app
from tests import payloads
from tests.conftest import SIGNING_KEY
from tests.receiver.test_app import FakeQueue, signed
from tests.worker.test_pipeline import memory_pipeline

BREVO_KEY = "xkeysib-0123456789abcdef-LOGTEST"
CALENDLY_TOKEN = "eyJraWQiOiJjYWxlbmRseS10b2tlbi1sb2d0ZXN0In0"
ADMIN_TOKEN = "admin-token-Zq9vK2LmN4pR7sT1-Hd6Jw3Xc"
OLD_ENCRYPTION_KEY = generate_key()
ENCRYPTION_KEY = generate_key()
SECRETS = (SIGNING_KEY, BREVO_KEY, CALENDLY_TOKEN, ADMIN_TOKEN, ENCRYPTION_KEY, OLD_ENCRYPTION_KEY)
EMAIL = "Ada.Lovelace@Example.com"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    REDACTOR.secrets, REDACTOR.mask_pii = [], True


Configure = Callable[..., Settings]


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Configure:
    """Load settings with every kind of secret (plus ``calendly`` keys) and configure logging."""

    def make(*, json_logs: bool | None = True, **calendly: Any) -> Settings:
        config = tmp_path / "config.yaml"
        block = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in calendly.items())
        config.write_text("connectors:\n  calendly:\n" + (block or "    enabled: true\n"))
        env = {
            "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
            "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
            "BREVO_API_KEY": BREVO_KEY,
            "CALENDLY_ACCESS_TOKEN": CALENDLY_TOKEN,
            "CONNECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
            "CONNECTOR_ENCRYPTION_KEY": f"{ENCRYPTION_KEY},{OLD_ENCRYPTION_KEY}",
        }
        settings = load_settings(config, env=env)
        configure_logging(settings, json_logs=json_logs)
        return settings

    return make


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def say_everything() -> None:
    """Secrets and an email in the message, in fields, nested, in an exception, via stdlib."""
    log = get_logger("calendly_brevo.test")
    log.info(f"calling Brevo with {BREVO_KEY} for {EMAIL}", email=EMAIL)
    log.warning(
        "nested", headers={"api-key": BREVO_KEY, "Authorization": f"Bearer {CALENDLY_TOKEN}"}
    )
    log.info("keys", keys=[SIGNING_KEY, ADMIN_TOKEN], box=OLD_ENCRYPTION_KEY)
    try:
        raise ValueError(f"refused token {CALENDLY_TOKEN} for {EMAIL}")
    except ValueError:
        log.exception("boom")
    logging.getLogger("calendly_brevo.stdlib").warning(
        "signature %s did not match for %s", SIGNING_KEY, EMAIL
    )
    log.debug("debug_line", email=EMAIL)


def test_mask_email_keeps_the_first_letter_and_the_domain() -> None:
    assert mask_email(f"to {EMAIL}, cc b@x.io") == "to A***@Example.com, cc b***@x.io"
    redactor = Redactor(["s3cret-value"], mask_pii=False)
    assert redactor.clean({"a": ["x s3cret-value y", EMAIL]}) == {"a": ["x [REDACTED] y", EMAIL]}


def test_secrets_are_redacted_and_emails_masked_by_default(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure()
    say_everything()
    err = capsys.readouterr().err
    lines = json_lines(err)  # every line is JSON
    assert [line["event"].split(" ")[0] for line in lines] == [
        "calling",
        "nested",
        "keys",
        "boom",
        "signature",
    ]
    assert lines[4]["event"] == "signature [REDACTED] did not match for A***@Example.com"
    for secret in SECRETS:
        assert secret not in err
    assert EMAIL not in err and EMAIL.lower() not in err
    assert lines[0]["email"] == "A***@Example.com"
    assert lines[1]["headers"] == {"api-key": "[REDACTED]", "Authorization": "Bearer [REDACTED]"}
    assert lines[2]["keys"] == ["[REDACTED]", "[REDACTED]"] and lines[2]["box"] == "[REDACTED]"
    assert "refused token [REDACTED] for A***@Example.com" in lines[3]["exception"]


def test_debug_true_shows_emails_but_never_secrets(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(debug=True)
    say_everything()
    err = capsys.readouterr().err
    lines = json_lines(err)
    for secret in SECRETS:
        assert secret not in err
    assert lines[0]["email"] == EMAIL
    assert lines[-1]["event"] == "debug_line"  # debug also lowers the level


def test_log_level_verbose_adds_debug_lines_and_info_does_not(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_level="info")
    get_logger("calendly_brevo.test").debug("debug_line")
    get_logger("calendly_brevo.test").info("info_line")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["info_line"]

    configure(log_level="verbose")
    get_logger("calendly_brevo.test").debug("debug_line", email=EMAIL)
    [line] = json_lines(capsys.readouterr().err)
    assert line["event"] == "debug_line" and line["level"] == "debug"
    assert line["email"] == "A***@Example.com"  # verbose is not debug: PII stays masked

    configure(log_level="warning")
    get_logger("calendly_brevo.test").info("info_line")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("log_webhooks", [False, True])
async def test_full_webhook_payloads_are_logged_only_with_log_webhooks(
    configure: Configure,
    capsys: pytest.CaptureFixture[str],
    aiohttp_client: Any,
    log_webhooks: bool,
) -> None:
    settings = configure(log_webhooks=log_webhooks)
    client = await aiohttp_client(create_app(settings, queue=FakeQueue()))
    envelope = payloads.invitee_created(email=EMAIL, name="Ada Lovelace")
    body = payloads.body(envelope)
    response = await client.post("/webhooks/calendly", data=body, headers=signed(body))
    assert response.status == 202
    err = capsys.readouterr().err
    logged = [line for line in json_lines(err) if line["event"] == "webhook_payload"]
    if not log_webhooks:
        assert logged == []
        assert "Ada Lovelace" not in err
        return
    [line] = logged
    assert line["event_name"] == "invitee.created"
    assert line["payload"]["payload"]["event"]  # the full payload...
    assert line["payload"]["payload"]["email"] == "A***@Example.com"  # ...PII masked
    assert line["payload"]["payload"]["name"] == "A***"  # names too, outside debug
    assert EMAIL.lower() not in err and SIGNING_KEY not in err


def test_console_format_is_readable_and_json_is_the_default_off_a_terminal(
    configure: Configure, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "console")
    configure(json_logs=None)
    get_logger("calendly_brevo.test").info("event_applied", outcome="applied", token=BREVO_KEY)
    [line] = capsys.readouterr().err.splitlines()
    assert not line.startswith("{")
    assert "event_applied" in line and "outcome=applied" in line and "token=[REDACTED]" in line
    assert "\x1b[" not in line  # no colours off a terminal

    monkeypatch.delenv("LOG_FORMAT")
    configure(json_logs=None)  # stderr is not a TTY under pytest
    get_logger("calendly_brevo.test").info("event_applied", outcome="applied")
    [doc] = json_lines(capsys.readouterr().err)
    assert doc["event"] == "event_applied" and doc["level"] == "info" and "timestamp" in doc


def test_every_processed_event_logs_one_line_with_id_name_outcome_and_duration(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure()
    pipeline, brevo = memory_pipeline()
    created = payloads.body(payloads.invitee_created(email=EMAIL)).decode()
    other = payloads.invitee_created(
        email="bob@example.com", invitee_uri=payloads.invitee_uri("E2", "I2")
    )
    assert pipeline.process(created, 1.0).status == "applied"
    assert pipeline.process(created, 1.0).status == "duplicate"
    ignored = payloads.body(payloads.event_type_created()).decode()
    assert pipeline.process(ignored, 1.0).status == "ignored"
    brevo.fail_upserts = 1
    with pytest.raises(TransientError):
        pipeline.process(payloads.body(other).decode(), 1.0)
    brevo.throttle_upserts = 1
    with pytest.raises(TransientError):
        pipeline.process(payloads.body(other).decode(), 1.0)
    brevo.fail_upserts, brevo.permanent = 1, True
    assert pipeline.process(payloads.body(other).decode(), 1.0).status == "dead_lettered"
    assert pipeline.process("not json", 1.0).status == "dead_lettered"
    err = capsys.readouterr().err
    lines = [line for line in json_lines(err) if line["event"].startswith("event_")]
    assert [(line["event"], line["outcome"]) for line in lines] == [
        ("event_applied", "applied"),
        ("event_duplicate", "duplicate"),
        ("event_ignored", "ignored"),
        ("event_retry", "retried"),
        ("event_rate_limited", "rate_limited"),
        ("event_dead_lettered", "dead_lettered"),
        ("event_dead_lettered", "dead_lettered"),
    ]
    names = ["invitee.created"] * 2 + ["event_type.created"] + ["invitee.created"] * 3 + [None]
    assert [line["event_name"] for line in lines] == names
    for line in lines[:-1]:
        assert len(line["event_id"]) == 64, line
    assert lines[-1]["event_id"] is None and lines[-1]["reason"] == "not_json"
    for line in lines:
        assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 10_000
        assert line["source"] == "webhook" and line["level"] in {"info", "warning", "error"}
    assert EMAIL not in err and "bob@example.com" not in err
