"""The receiver app on a real socket in a background thread, with a recording queue.

Hypothesis drives plain synchronous tests, and a slow client needs a real TCP server, so the app
runs on 127.0.0.1 in a thread with its own loop (like the fake Brevo) instead of in
``aiohttp_client``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from calendly_brevo.config import Settings
from calendly_brevo.errors import QueueUnavailable
from receiver.app import create_app


class RecordingQueue:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.down = False
        self._lock = threading.Lock()

    async def enqueue(self, body: str, *, received_at: float, source: str = "webhook") -> str:
        if self.down:
            raise QueueUnavailable("redis: ConnectionError")
        with self._lock:
            self.items.append(body)
            return f"m{len(self.items)}"

    async def ping(self) -> bool:
        return not self.down


class ThreadedReceiver:
    def __init__(self, settings: Settings) -> None:
        self.queue = RecordingQueue()
        self.app = create_app(settings, queue=self.queue)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def start(self) -> ThreadedReceiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def serving(settings: Settings) -> Iterator[ThreadedReceiver]:
    server = ThreadedReceiver(settings).start()
    try:
        yield server
    finally:
        server.stop()
