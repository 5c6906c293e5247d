"""Secrets and personal data stay out of logs, metrics and answers; admin needs its token.

The other security checks of issue 9 live beside the code they test (see
:data:`REFERENCED`, which this file checks still exist):

- the OAuth callback refuses a bad or missing ``state``: ``tests/calendly/test_oauth.py``;
- OAuth tokens are encrypted at rest: ``tests/calendly/test_oauth.py``, ``test_crypto.py``;
- the container runs as a non-root user: ``tests/deploy/test_container.py``;
- unsigned, forged, stale and malformed webhooks: ``tests/security/test_receiver_hostile.py``.

``make audit`` (pip-audit over the locked dependencies) needs PyPI or OSV on the network.
"""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from calendly_brevo.signature import HEADER, sign
from tests import payloads
from tests.conftest import make_settings
from tests.e2e.procs import ROOT, free_port, run_cli, started, wait_for, wait_http
from tests.fakes.brevo import running_fake_brevo

REFERENCED = {
    "tests/calendly/test_oauth.py": [
        "test_a_callback_with_a_bad_or_missing_state_is_refused_and_stores_nothing",
        "test_oauth_end_to_end_stores_tokens_encrypted_and_a_refresh_rotates_them",
    ],
    "tests/calendly/test_crypto.py": [
        "test_a_bad_key_names_the_setting_and_the_repr_hides_keys",
    ],
    "tests/deploy/test_container.py": ["test_the_runtime_stage_runs_as_a_non_root_user"],
}

SIGNING_KEY = "whsec-secrets-test-Y2hhb3Mtc2lnbmluZy1rZXk"
BREVO_KEY = "xkeysib-secrets-test-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ADMIN_TOKEN = "admin-token-secrets-test-7d1c0b9a8f7e6d5c"
CALENDLY_TOKEN = "calendly-pat-secrets-test-eyJhbGciOiJIUzI1NiJ9"
ENCRYPTION_KEY = Fernet.generate_key().decode()
EVENT_TYPE = payloads.event_type_uri("SECRETS01")
PEOPLE = [
    ("ada.lovelace@example.com", "Ada Lovelace"),
    ("grace+calendly@example.org", "Grace Hopper"),
    ("zoë.ünïcode@exämple.com", "Zoë Ünïcode"),
    ("bounce@example.net", "Barbara Liskov"),
]
CONFIG = f"""
connectors:
  calendly:
    event_mapping:
      demo: {{list_id: 11, event_type_uri: "{EVENT_TYPE}"}}
field_mapping:
  name: FIRSTNAME
  questions_and_answers: {{phone: SMS}}
  status: BOOKING_STATUS
worker:
  min_backoff_seconds: 0.1
  max_backoff_seconds: 0.5
"""


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=10)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_no_secret_or_email_reaches_logs_metrics_or_error_answers(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    port, admin_port = free_port(), free_port()
    env = {
        "CONNECTOR_CONFIG": str(tmp_path / "config.yaml"),
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "CALENDLY_ACCESS_TOKEN": CALENDLY_TOKEN,
        "CONNECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
        "CONNECTOR_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "BREVO_API_KEY": BREVO_KEY,
        "PORT": str(port),
        "ADMIN_PORT": str(admin_port),
        "LOG_FORMAT": "json",
    }
    seen: list[str] = []  # every answer body and CLI output
    with running_fake_brevo(api_key=BREVO_KEY, lists={11: "Demo"}) as fake:
        for attribute, kind in (
            ("BOOKING_STATUS", "text"),
            ("CALENDLY_EVENT_TYPE", "text"),
            ("MEETING_DATE", "date"),
            ("PHONE_TEXT", "text"),
        ):
            fake.add_attribute(attribute, kind)
        env["BREVO_API_URL"] = fake.base_url
        # One event dead-letters (400), others retry through a 503 and a 429.
        fake.inject("400", path=r"/v3/events$", count=1)
        fake.inject("5xx", path=r"/v3/contacts$", count=1)
        fake.inject("429", path=r"/v3/contacts$", count=1)
        with started(["run"], env, tmp_path / "run.log") as proc:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/readyz", proc)
            hook = f"{base}/webhooks/calendly"
            for i, (email, name) in enumerate(PEOPLE):
                doc = payloads.invitee_created(
                    email=email,
                    name=name,
                    invitee_uri=payloads.invitee_uri(f"SE{i}", f"SI{i}"),
                    event_type_uri=EVENT_TYPE,
                    questions=(("Phone", "+31 6 12345678"),),
                )
                body = payloads.body(doc)
                r = _post(hook, body, {HEADER: sign(SIGNING_KEY, body, int(time.time()))})
                assert r.status_code == 202
                seen.append(r.text)
                # Hostile variants: their error answers must not echo anything back.
                for headers in (
                    {},
                    {HEADER: sign("not-the-key", body, int(time.time()))},
                    {HEADER: sign(SIGNING_KEY, body, int(time.time()) - 3600)},
                    {HEADER: f"t=1,v1={SIGNING_KEY}"},
                ):
                    r = _post(hook, body, headers)
                    assert 400 <= r.status_code < 500
                    seen.append(r.text)
                bad = body[:-5]
                r = _post(hook, bad, {HEADER: sign(SIGNING_KEY, bad, int(time.time()))})
                assert r.status_code == 400
                seen.append(r.text)
            wait_for(lambda: len(fake.state.events) >= len(PEOPLE) - 1, timeout=60)
            assert "event_dead_lettered" in proc.log()

            # Admin is on the admin port and needs the bearer token; a wrong one is told
            # nothing more.
            admin = f"http://127.0.0.1:{admin_port}"
            for path in ("/admin/status", "/metrics", "/oauth/calendly/start"):
                auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                assert httpx.get(f"{base}{path}", headers=auth, timeout=10).status_code == 404
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {ADMIN_TOKEN}"},
                {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
                {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
            ):
                r = httpx.get(f"{admin}/admin/status", headers=headers, timeout=10)
                assert r.status_code == 401, headers
                seen.append(r.text)
            ok = httpx.get(
                f"{admin}/admin/status",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=10,
            )
            assert ok.status_code == 200
            seen.append(ok.text)
            r = httpx.post(f"{admin}/admin/scheduling-links", json={}, timeout=10)
            assert r.status_code == 401
            metrics = httpx.get(f"{admin}/metrics", timeout=10).text
            seen.append(metrics)
        for args in (["dlq", "list"], ["status"], ["dlq", "list", "--json"]):
            out = run_cli(args, env)
            seen.append(out.stdout + out.stderr)
        log = proc.log()

    everything = "\n".join([log, *seen])
    for secret in (SIGNING_KEY, BREVO_KEY, ADMIN_TOKEN, CALENDLY_TOKEN, ENCRYPTION_KEY):
        assert secret not in everything, f"a secret leaked: {secret[:12]}…"
        assert secret[:16] not in everything, f"part of a secret leaked: {secret[:12]}…"
    for email, name in PEOPLE:
        for form in {email, email.upper(), email.split("@")[0]}:
            assert form.lower() not in everything.lower(), f"an address leaked: {form}"
        assert name not in log, f"a name reached the log: {name}"
    assert "+31 6 12345678" not in log and "+31612345678" not in log
    # Metric labels are low-cardinality: no addresses, URIs or ids.
    labels = re.findall(r"\{([^}]*)\}", metrics)
    assert not [label for label in labels if "@" in label or "calendly.com/" in label]


async def test_without_an_admin_token_the_admin_api_does_not_exist(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from receiver.admin import setup_admin
    from receiver.app import create_admin_app

    settings = make_settings(tmp_path)
    app = create_admin_app(settings, extra_setup=[lambda a: setup_admin(a, settings, object())])
    client = await aiohttp_client(app)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        r = await client.get("/admin/status", headers=headers)
        assert r.status == 404
        assert "CONNECTOR_ADMIN_TOKEN" in (await r.json())["error"]


def test_the_other_security_checks_live_where_this_file_points() -> None:
    for path, names in REFERENCED.items():
        tree = ast.parse((ROOT / path).read_text())
        defined = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        missing = set(names) - defined
        assert not missing, f"{path} no longer has {sorted(missing)}: update this file's list"


def test_settings_reprs_and_dumps_hide_every_secret(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        BREVO_API_KEY=BREVO_KEY,
        CONNECTOR_ADMIN_TOKEN=ADMIN_TOKEN,
        CALENDLY_ACCESS_TOKEN=CALENDLY_TOKEN,
        CONNECTOR_ENCRYPTION_KEY=ENCRYPTION_KEY,
    )
    shown = repr(settings) + str(settings) + json.dumps(settings.model_dump(mode="json"))
    for secret in (BREVO_KEY, ADMIN_TOKEN, CALENDLY_TOKEN, ENCRYPTION_KEY):
        assert secret not in shown
