"""A lean HTTP/1.1 keep-alive load generator on raw asyncio protocols (no HTTP client library).

    python -m benchmarks.loadgen --url http://127.0.0.1:8080/webhooks/calendly \
        --mode closed --conns 32 --duration 10 --warmup 2
    python -m benchmarks.loadgen --url ... --mode rate --rate 1000 --conns 64 --duration 10

Requests are signed ``invitee.created`` webhooks built before the clock starts (a pool of
distinct bodies, re-signed every 60 s so the signature never goes stale). Responses are parsed
just enough to find their end (status line, ``Content-Length``), so the generator spends a few
microseconds per request and is not the bottleneck. Prints one JSON object on stdout.

- ``closed``: every connection sends its next request as soon as the previous answer arrives
  (saturation). Figure: answered requests per second over ``duration`` after ``warmup``.
- ``rate``: open loop at a fixed rate; latency counts from the *scheduled* send time, so a
  stalled server cannot hide its queueing delay (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

from benchmarks.common import body, cpu_seconds, signed_headers, template

RESIGN_EVERY = 60.0


class Requests:
    def __init__(self, host: str, path: str, pool: int, offset: int) -> None:
        self.host, self.path, self.pool_size, self.offset = host, path, pool, offset
        self.tmpl = template()
        self.signed_at = 0.0
        self.pool: list[bytes] = []
        self.i = 0
        self.refresh()

    def refresh(self) -> None:
        now = int(time.time())
        pool = []
        for k in range(self.pool_size):
            raw = body(self.tmpl, self.offset + k)
            headers = signed_headers(raw, now)
            head = (
                f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                + f"Content-Length: {len(raw)}\r\n\r\n"
            )
            pool.append(head.encode() + raw)
        self.pool, self.signed_at = pool, time.monotonic()

    def next(self) -> bytes:
        self.i += 1
        return self.pool[self.i % self.pool_size]


class Conn(asyncio.Protocol):
    def __init__(self, gen: Gen) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.need: int | None = None
        self.status = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, scheduled: float) -> None:
        self.sent_at = scheduled
        assert self.transport is not None
        self.transport.write(self.gen.requests.next())

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                self.status = int(head[9:12])
                i = head.find(b"\r\ncontent-length:")
                length = int(head[i + 17 : head.find(b"\r\n", i + 2)]) if i >= 0 else 0
                self.need = end + 4 + length
            if len(buf) < self.need:
                return
            del buf[: self.need]
            self.need = None
            self.gen.done(self, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.gen.lost(self)


class Gen:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        self.addr = (url.hostname or "127.0.0.1", url.port or 80)
        self.requests = Requests(url.netloc, url.path, args.pool, args.offset)
        self.args = args
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.measuring = False
        self.stopping = False
        self.errors = 0
        self.idle: list[Conn] = []
        self.backlog: list[float] = []

    def done(self, conn: Conn, status: int) -> None:
        now = time.perf_counter()
        if self.measuring:
            self.statuses[status] += 1
            if self.args.mode == "rate":
                self.latencies.append(now - conn.sent_at)
        if self.stopping:
            return
        if self.args.mode == "closed":
            conn.send(now)
        elif self.backlog:
            conn.send(self.backlog.pop(0))
        else:
            self.idle.append(conn)

    def lost(self, conn: Conn) -> None:
        if not self.stopping:
            self.errors += 1

    async def run(self) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        conns: list[Conn] = []
        for _ in range(self.args.conns):
            _, proto = await loop.create_connection(lambda: Conn(self), *self.addr)
            conns.append(proto)
        warmup, duration = self.args.warmup, self.args.duration
        start = time.perf_counter()
        if self.args.mode == "closed":
            for c in conns:
                c.send(start)
            await asyncio.sleep(warmup)
            self.measuring = True
            t0 = time.perf_counter()
            cpu0 = self._cpu()
            await self._sleep_resigning(duration)
            self.measuring = False
            elapsed = time.perf_counter() - t0
            cpu1 = self._cpu()
        else:
            self.idle = list(conns)
            rate = self.args.rate
            k = 0
            t0 = start + warmup
            end = t0 + duration
            cpu0 = None
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                if not self.measuring and now >= t0:
                    self.measuring = True
                    cpu0 = self._cpu()
                while start + k / rate <= now:
                    scheduled = start + k / rate
                    k += 1
                    if self.idle:
                        self.idle.pop().send(scheduled)
                    else:
                        self.backlog.append(scheduled)
                if time.monotonic() - self.requests.signed_at > RESIGN_EVERY:
                    self.requests.refresh()
                await asyncio.sleep(0.0005)
            # let in-flight requests of the window finish (they are counted)
            drain_until = time.perf_counter() + 5
            while (self.backlog or len(self.idle) < len(conns)) and (
                time.perf_counter() < drain_until
            ):
                await asyncio.sleep(0.005)
            self.measuring = False
            elapsed = duration
            cpu1 = self._cpu()
            elapsed_cpu = time.perf_counter() - t0
        if self.args.mode == "closed":
            elapsed_cpu = elapsed
        self.stopping = True
        for c in conns:
            if c.transport is not None:
                c.transport.close()
        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        out: dict[str, object] = {
            "mode": self.args.mode,
            "conns": self.args.conns,
            "elapsed": elapsed,
            "answered": sum(self.statuses.values()),
            "ok": ok,
            "rps": ok / elapsed if elapsed else 0.0,
            "statuses": {str(s): n for s, n in self.statuses.items()},
            "errors": self.errors,
        }
        if cpu0 is not None:
            out["cpu_self"] = (cpu1[0] - cpu0[0]) / elapsed_cpu
            if self.args.cpu_pid:
                out["cpu_server"] = (cpu1[1] - cpu0[1]) / elapsed_cpu
        if self.latencies:
            lat = sorted(self.latencies)

            def pct(p: float) -> float:
                return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

            out["lat_ms"] = {
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "max": lat[-1] * 1000,
            }
            out["rate"] = self.args.rate
        return out

    def _cpu(self) -> tuple[float, float]:
        """(own CPU seconds, the server's CPU seconds) so far."""
        server = cpu_seconds(self.args.cpu_pid) if self.args.cpu_pid else 0.0
        return time.process_time(), server

    async def _sleep_resigning(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            await asyncio.sleep(min(left, 1.0))
            if time.monotonic() - self.requests.signed_at > RESIGN_EVERY:
                self.requests.refresh()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("closed", "rate"), default="closed")
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pool", type=int, default=2000, help="distinct bodies")
    parser.add_argument("--cpu-pid", type=int, default=0, help="report this process's CPU use")
    parser.add_argument("--offset", type=int, default=0, help="first invitee number")
    args = parser.parse_args(argv)
    result = asyncio.run(Gen(args).run())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
