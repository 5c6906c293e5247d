"""A zero-latency Brevo stand-in for the pipeline, memory and backfill benchmarks.

    python -m benchmarks.brevo_stub --port 8091

The fake Brevo of the tests (``tests.fakes.brevo``) validates every request against Brevo's
OpenAPI spec, which costs a few milliseconds of CPU per request: on a 2-core machine it would
compete with the worker being measured. This stand-in is a raw asyncio HTTP/1.1 server (keep-alive,
``Content-Length`` bodies) that answers what the worker calls, at once, without looking at bodies:

- ``POST /v3/contacts`` → 201 ``{"id": n}``; ``PUT /v3/contacts/…``, ``POST /v3/contacts/batch``
  and ``POST /v3/events`` → 204; ``POST /v3/events/batch`` → 202 (items counted as events,
  requests as ``event_calls``);
- ``GET /v3/contacts/attributes`` and ``GET /v3/contacts/lists`` → what the worker's start-up
  check needs (the benchmark config's attributes and list);
- every answer carries ``x-sib-ratelimit-*`` headers with plenty remaining (no pause);
- ``GET /__stub__/counts`` → requests per family so far, as JSON.

The benchmarks that are about rate limits (``ratelimit``, ``burst``) use the real fake instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter

from benchmarks.common import ATTRIBUTES, LIST_ID

HEADERS = (
    b"x-sib-ratelimit-limit: 100000\r\n"
    b"x-sib-ratelimit-remaining: 99999\r\n"
    b"x-sib-ratelimit-reset: 1\r\n"
)
ATTRS = json.dumps(
    {
        "attributes": [{"name": n, "category": "normal", "type": t} for n, t in ATTRIBUTES]
        + [{"name": n, "category": "normal", "type": "text"} for n in ("FIRSTNAME", "LASTNAME")]
    }
).encode()
LISTS = json.dumps(
    {"lists": [{"id": LIST_ID, "name": "Bench", "folderId": 1}], "count": 1}
).encode()


def response(status: int, reason: str, body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\n".encode() + HEADERS
    if body:
        head += b"Content-Type: application/json\r\n"
    return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


NO_CONTENT = response(204, "No Content")


class Stub(asyncio.Protocol):
    counts: Counter[str] = Counter()
    contact_id = 0

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            i = head.lower().find(b"\r\ncontent-length:")
            length = int(head[i + 17 : head.find(b"\r\n", i + 2)]) if i >= 0 else 0
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            method, path = head.split(b" ", 2)[:2]
            assert self.transport is not None
            self.transport.write(self.answer(method, path, body))

    def answer(self, method: bytes, path: bytes, body: bytes = b"") -> bytes:
        counts = Stub.counts
        if path.startswith(b"/__stub__/counts"):
            return response(200, "OK", json.dumps(counts).encode())
        if path.startswith(b"/v3/contacts"):
            counts["contacts"] += 1
            if method == b"POST" and path == b"/v3/contacts":
                counts["upserts"] += 1
                Stub.contact_id += 1
                return response(201, "Created", b'{"id":%d}' % Stub.contact_id)
            if method == b"GET" and path.startswith(b"/v3/contacts/attributes"):
                return response(200, "OK", ATTRS)
            if method == b"GET" and path.startswith(b"/v3/contacts/lists"):
                offset = b"offset=0" in path or b"offset" not in path
                return response(200, "OK", LISTS if offset else b'{"lists":[],"count":1}')
            if method == b"POST" and path == b"/v3/contacts/batch":
                counts["contact_updates"] += body.count(b'"email"')
                return NO_CONTENT
            counts["contact_updates"] += 1
            return NO_CONTENT
        if method == b"POST" and path == b"/v3/events":
            counts["events"] += 1
            counts["event_calls"] += 1
            return NO_CONTENT
        if method == b"POST" and path == b"/v3/events/batch":
            items = body.count(b'"event_name"')
            counts["events"] += items
            counts["event_calls"] += 1
            return response(202, "Accepted", b'{"message":"Batch accepted","count":%d}' % items)
        counts["other"] += 1
        return response(404, "Not Found", b'{"code":"document_not_found","message":"stub"}')


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stub, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.brevo_stub")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
