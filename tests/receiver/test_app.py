"""The receiver over real HTTP (aiohttp test server) with an in-memory queue fake."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from calendly_brevo.errors import QueueUnavailable
from calendly_brevo.signature import HEADER, sign
from receiver.app import create_admin_app, create_app
from tests.conftest import SIGNING_KEY, make_settings

BODY = json.dumps(
    {
        "event": "invitee.created",
        "created_at": "2020-11-23T17:51:19.000000Z",
        "created_by": "https://api.calendly.com/users/AAAA",
        "payload": {"email": "ada@example.com", "uri": "https://api.calendly.com/x/invitees/1"},
    }
).encode()

Client = TestClient[web.Request, web.Application]


class FakeQueue:
    def __init__(self) -> None:
        self.items: list[tuple[str, float, str]] = []
        #: The label of the key that verified each item.
        self.keys: list[str | None] = []
        self.down = False

    async def enqueue(
        self,
        body: str,
        *,
        received_at: float,
        source: str = "webhook",
        signature_key: str | None = None,
    ) -> str:
        if self.down:
            raise QueueUnavailable("redis: ConnectionError")
        self.items.append((body, received_at, source))
        self.keys.append(signature_key)
        return f"m{len(self.items)}"

    async def ping(self) -> bool:
        return not self.down


def signed(body: bytes, key: str = SIGNING_KEY, t: int | None = None) -> dict[str, str]:
    return {
        HEADER: sign(key, body, int(time.time()) if t is None else t),
        "Content-Type": "application/json",
    }


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, queue: FakeQueue) -> Client:
    settings = make_settings(tmp_path)
    return await aiohttp_client(create_app(settings, queue=queue))  # type: ignore[no-any-return]


@pytest.fixture
async def admin(aiohttp_client: Any, tmp_path: Path) -> Client:
    """The admin listener (``server.admin_port``): /metrics lives there."""
    return await aiohttp_client(create_admin_app(make_settings(tmp_path)))  # type: ignore[no-any-return]


async def test_signed_webhook_is_accepted_and_enqueued_raw(
    client: Client, queue: FakeQueue
) -> None:
    before = time.time()
    r = await client.post("/webhooks/calendly", data=BODY, headers=signed(BODY))
    assert r.status == 202
    assert (await r.json())["status"] == "accepted"
    [(body, received_at, source)] = queue.items
    assert body.encode() == BODY  # the raw bytes, not a re-serialisation
    assert before <= received_at <= time.time()
    assert source == "webhook"


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda: {}, "unsigned"),
        (lambda: {HEADER: "nonsense"}, "malformed_signature"),
        (lambda: {HEADER: sign("wrong-key", BODY, int(time.time()))}, "bad_signature"),
        (lambda: {HEADER: sign(SIGNING_KEY, BODY, int(time.time()) - 181)}, "stale"),
    ],
)
async def test_bad_signatures_get_401_and_are_never_enqueued(
    client: Client,
    queue: FakeQueue,
    make_headers: Any,
    reason: str,
) -> None:
    # Headers are built when the test runs: a timestamp taken at collection would go stale.
    r = await client.post("/webhooks/calendly", data=BODY, headers=make_headers())
    assert r.status == 401
    assert (await r.json())["reason"] == reason
    assert queue.items == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2,3]",
        b'{"event": 1, "payload": {}}',
        b'{"event": "x"}',
        b"\xff\xfe{}",
        b"[" * 100000 + b"]" * 100000,
    ],
)
async def test_signed_but_malformed_body_gets_400_and_is_not_enqueued(
    client: Client,
    queue: FakeQueue,
    body: bytes,
) -> None:
    r = await client.post("/webhooks/calendly", data=body, headers=signed(body))
    assert r.status in (400, 413)
    assert queue.items == []


async def test_oversized_body_gets_413(client: Client, queue: FakeQueue) -> None:
    body = b'{"event":"invitee.created","payload":{"x":"' + b"a" * 300_000 + b'"}}'
    r = await client.post("/webhooks/calendly", data=body, headers=signed(body))
    assert r.status == 413
    assert (await r.json())["reason"] == "too_large"
    assert queue.items == []


async def test_queue_down_gets_503_so_calendly_retries(client: Client, queue: FakeQueue) -> None:
    queue.down = True
    r = await client.post("/webhooks/calendly", data=BODY, headers=signed(BODY))
    assert r.status == 503
    assert (await r.json())["reason"] == "queue_down"


async def test_healthz_and_readyz(client: Client, queue: FakeQueue) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    queue.down = True
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503


async def test_metrics_count_outcomes_by_event(client: Client, admin: Client) -> None:
    await client.post("/webhooks/calendly", data=BODY, headers=signed(BODY))
    await client.post("/webhooks/calendly", data=BODY, headers={})
    text = await (await admin.get("/metrics")).text()
    assert (
        'calendly_brevo_webhooks_received_total{event="invitee.created",outcome="accepted"}' in text
    )
    assert 'calendly_brevo_webhooks_received_total{event="other",outcome="unsigned"}' in text
    assert "calendly_brevo_webhook_receive_seconds_bucket" in text


async def test_metrics_name_the_running_version(admin: Client) -> None:
    from calendly_brevo import __version__

    text = await (await admin.get("/metrics")).text()
    assert f'calendly_brevo_build_info{{version="{__version__}"}} 1.0' in text


async def test_rotated_previous_key_still_accepted_and_each_delivery_names_its_key(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "connectors:\n  calendly:\n    webhook:\n      signing_key: new\n"
        "      previous_signing_keys: [old]\n"
    )
    from calendly_brevo.config import load_settings

    queue = FakeQueue()
    client = await aiohttp_client(create_app(load_settings(cfg, env={}), queue=queue))
    for key in ("new", "old"):
        r = await client.post("/webhooks/calendly", data=BODY, headers=signed(BODY, key))
        assert r.status == 202
    assert len(queue.items) == 2
    # Which key verified each one, as a label that never holds the key: its place in the
    # config and the first 8 hex characters of its SHA-256.
    assert queue.keys == [
        "signing_key:" + hashlib.sha256(b"new").hexdigest()[:8],
        "previous_signing_keys.0:" + hashlib.sha256(b"old").hexdigest()[:8],
    ]


async def test_a_key_from_the_ring_that_is_not_in_the_config_is_labelled_stored(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """Keys ``webhooks install`` stored in the database come from the key ring's loader."""
    from calendly_brevo.keyring import KeyRing

    ring = KeyRing([SIGNING_KEY], loader=lambda: ["installed-key"])
    ring.prime()
    queue = FakeQueue()
    app = create_app(make_settings(tmp_path), queue=queue, signing_keys=ring, key_label=ring.label)
    client = await aiohttp_client(app)
    r = await client.post("/webhooks/calendly", data=BODY, headers=signed(BODY, "installed-key"))
    assert r.status == 202
    assert queue.keys == ["stored:" + hashlib.sha256(b"installed-key").hexdigest()[:8]]


async def test_replay_of_a_captured_request_after_the_tolerance_is_refused(
    client: Client,
    queue: FakeQueue,
) -> None:
    headers = signed(BODY, t=int(time.time()) - 200)
    r = await client.post("/webhooks/calendly", data=BODY, headers=headers)
    assert r.status == 401
    assert queue.items == []
