"""The receiver app on a real socket in a background thread, with a recording queue.

Hypothesis drives plain synchronous tests, and a slow client needs a real TCP server, so the app
runs on 127.0.0.1 in a thread with its own loop (like the fake Brevo) instead of in
``aiohttp_client``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from calendly_brevo.config import Settings
from calendly_brevo.errors import QueueUnavailable
from receiver.app import create_app
from tests.fakes.threaded import ThreadedServer


class RecordingQueue:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.down = False
        self._lock = threading.Lock()

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
        with self._lock:
            self.items.append(body)
            return f"m{len(self.items)}"

    async def ping(self) -> bool:
        return not self.down


class ThreadedReceiver(ThreadedServer):
    name = "receiver"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.queue = RecordingQueue()
        self.app = create_app(settings, queue=self.queue)

    def make_app(self) -> web.Application:
        return self.app


@contextmanager
def serving(settings: Settings) -> Iterator[ThreadedReceiver]:
    server = ThreadedReceiver(settings).start()
    try:
        yield server
    finally:
        server.stop()
