"""Issue 13.3: a stalled database never freezes the receiver. A TCP relay in front of the real
Postgres stops forwarding; webhooks keep answering 202 from the last good key set."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet

from calendly_brevo.calendly.subscription_store import active_signing_keys, store_signing_key
from calendly_brevo.db.engine import make_engine, make_sessionmaker
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.encryption_key import load_box
from calendly_brevo.keyring import KeyRing
from receiver.app import create_app
from tests.conftest import make_settings
from tests.receiver.test_app import BODY, FakeQueue, signed

DB_KEY = "a-signing-key-stored-by-webhooks-install-0123"


class Relay:
    """Forwards TCP to ``upstream`` until :meth:`stall`; then swallows everything, both ways,
    and keeps every connection open: what a hung database looks like to a client."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.stalled = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.stalled.is_set():
                    dst.sendall(data)
        except OSError:
            pass

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        for s in self.sockets:
            s.close()


@pytest.fixture
def relay(postgres_url: str) -> Iterator[Relay]:
    parts = urlsplit(postgres_url)
    r = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield r
    r.close()


async def test_webhooks_keep_answering_202_from_the_last_good_keys_while_postgres_hangs(
    aiohttp_client: Any, tmp_path: Path, postgres_url: str, relay: Relay
) -> None:
    settings = make_settings(tmp_path, CONNECTOR_ENCRYPTION_KEY=Fernet.generate_key().decode())
    box = load_box(settings)
    direct = make_engine(postgres_url)
    upgrade(direct)
    store_signing_key(make_sessionmaker(direct), box, DB_KEY, "https://api.calendly.com/s/1")
    parts = urlsplit(postgres_url)
    relayed_url = postgres_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{relay.port}")
    relayed = make_engine(relayed_url, connect_timeout=2, statement_timeout=2)
    sessions = make_sessionmaker(relayed)
    ring = KeyRing([], lambda: active_signing_keys(sessions, box), refresh_seconds=0.0)
    assert DB_KEY in ring.prime()
    client = await aiohttp_client(create_app(settings, queue=FakeQueue(), signing_keys=ring))

    relay.stall()
    for _ in range(5):  # every call is due a refresh: none may wait for the database
        async with asyncio.timeout(1.5):
            answer = await client.post(
                "/webhooks/calendly", data=BODY, headers=signed(BODY, DB_KEY)
            )
        assert answer.status == 202, await answer.text()
        async with asyncio.timeout(1.5):
            health = await client.get("/healthz")
        assert health.status == 200
    relay.close()
    relayed.dispose()
    direct.dispose()


def test_postgres_engines_get_a_connect_and_a_statement_timeout(postgres_url: str) -> None:
    engine = make_engine(postgres_url, connect_timeout=3, statement_timeout=1.5)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
            # ... and the URL's own options (the test schema's search_path) still apply
            assert str(conn.exec_driver_sql("SHOW search_path").scalar()) in postgres_url
    finally:
        engine.dispose()
