"""Requests to Brevo on keep-alive ``http.client`` connections: many in flight from one thread
(the group pass's new contacts), and every single request without query parameters.

httpx's synchronous client sends a request and reads its answer before its caller can send the
next one, so requests overlap only across threads. Each costs about 0.6 ms of CPU in httpx alone,
and about 1.2 ms on four threads that contend for the interpreter lock: the largest share of
the worker's CPU per event, since every first-time booker needs a ``POST /contacts`` of its own
(Brevo has no synchronous bulk create). Here a wave of requests is written first, each on a
keep-alive connection of its own (the standard library's ``http.client``), and then every answer
is read: they are in flight together, from one thread, for about 0.15 ms of CPU each
(``benchmarks/RESULTS.md``, "New contacts in one wave"). A single request costs the same here,
so :class:`~calendly_brevo.brevo.transport.Transport` sends every request on the wire that needs
no query string (httpx encodes those): the bulk calls, the one-event path's upserts and events.

:meth:`Wire.for_client` builds one only for an ``httpx.Client`` that would itself go straight
to Brevo (its own default transport for the base URL: no proxy, no mounted test transport),
with the same TLS verification (``httpx.create_ssl_context``), base URL, headers and timeouts.
Otherwise it returns ``None`` and the caller sends through httpx.

Failures are reported, not raised, as the httpx error the request would have failed with
(``ConnectError``, ``ReadTimeout``, …, its request attached, so a command names the URL it could
not reach): a request that could not be connected was never sent (:attr:`Failure.sent` false);
one that failed after its first byte was written may have reached Brevo (:attr:`Failure.sent`
true), which the caller treats as in doubt, as it does httpx's.

Idle connections are closed by :meth:`Wire.close`, or when the wire is garbage-collected (a
one-off command that closes only its httpx client leaves no socket open).
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

#: Idle keep-alive connections kept for the next wave (httpx's pool keeps 16 too).
MAX_IDLE = 16
#: Seconds an idle connection is kept (httpx's default ``keepalive_expiry``): one idle longer
#: may have been dropped by a NAT or a firewall without a word, and a request written into it
#: would be in doubt for nothing.
KEEPALIVE_EXPIRY = 5.0


@dataclass(frozen=True)
class Failure:
    """A request without an answer: ``sent`` says whether Brevo may have received it."""

    error: httpx.TransportError
    sent: bool


@dataclass(eq=False)
class Pending:
    """A request written to its connection, its answer not read yet."""

    conn: http.client.HTTPConnection
    started: float
    method: str
    url: str


class Wire:
    """Keep-alive ``http.client`` connections to one origin (see the module)."""

    def __init__(
        self,
        base_url: httpx.URL,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
        context: ssl.SSLContext | None,
    ) -> None:
        self.host = base_url.host
        self.https = base_url.scheme == "https"
        self.port = base_url.port or (443 if self.https else 80)
        self.prefix = base_url.path.rstrip("/")
        self.origin = f"{base_url.scheme}://{base_url.netloc.decode('ascii')}"
        self.headers = dict(headers)
        self.connect_timeout = timeout.connect
        self.read_timeout = timeout.read
        self._context = context
        #: Idle connections, each with the ``time.monotonic()`` it was checked in.
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._idle)

    @classmethod
    def for_client(cls, client: httpx.Client) -> Wire | None:
        """A wire with ``client``'s base URL, headers, timeouts and TLS verification, or
        ``None`` when ``client`` would not send straight to that URL itself."""
        base = client.base_url
        if base.scheme not in ("http", "https") or not base.host:
            return None
        # httpx's own choice of transport for the base URL: a proxy (the environment's
        # HTTPS_PROXY) or a mounted test transport is not httpx's plain HTTPTransport.
        transport = client._transport_for_url(base)
        if transport is not client._transport or type(transport) is not httpx.HTTPTransport:
            return None
        headers = {
            k: v
            for k, v in client.headers.items()
            if k.lower() in ("accept", "user-agent")  # no gzip: this reads bodies as they come
        }
        context = httpx.create_ssl_context() if base.scheme == "https" else None
        return cls(base, headers, client.timeout, context)

    # -- connections -----------------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.connect_timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        conn.connect()
        return conn

    def _checkout(self) -> http.client.HTTPConnection:
        """An idle connection still open (nothing to read on it) and idle for less than
        :data:`KEEPALIVE_EXPIRY`, or a new one."""
        while True:
            with self._lock:
                conn, since = self._idle.pop() if self._idle else (None, 0.0)
            if conn is None:
                return self._connect()
            if time.monotonic() - since < KEEPALIVE_EXPIRY and _open(conn):
                return conn
            conn.close()

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle = self._idle[:]
            self._idle.clear()
        _close_all(idle)

    # -- requests --------------------------------------------------------------------------------
    def start(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Pending | Failure:
        """Write one request (``path`` below the base URL; ``body`` JSON, or ``None``) on a
        connection of its own."""
        started = time.perf_counter()
        url = self.prefix + path
        try:
            conn = self._checkout()
        except OSError as exc:  # refused, unreachable, a connect timeout, a TLS error
            return self._failure(exc, method, url, sent=False)
        try:
            if conn.sock is not None:
                conn.sock.settimeout(self.read_timeout)
            sent = {**self.headers, **headers}
            if body is not None:
                sent["Content-Type"] = "application/json"
            conn.request(method, url, body=body, headers=sent)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return self._failure(exc, method, url, sent=True)
        return Pending(conn, started, method, url)

    def deadline(self) -> float:
        """The ``perf_counter`` by which the answers to requests written until now are due."""
        return time.perf_counter() + self.read_timeout if self.read_timeout else float("inf")

    def finish(self, pending: Pending, deadline: float) -> httpx.Response | Failure:
        """Read the answer of a request :meth:`start` wrote, by ``deadline`` (``perf_counter``)."""
        conn = pending.conn
        try:
            if conn.sock is not None and deadline != float("inf"):
                conn.sock.settimeout(max(0.001, deadline - time.perf_counter()))
            answer = conn.getresponse()
            content = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return self._failure(exc, pending.method, pending.url, sent=True)
        if answer.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return read_response(answer.status, answer.getheaders(), content)

    def _failure(self, exc: BaseException, method: str, url: str, *, sent: bool) -> Failure:
        """``exc`` as the httpx error it stands for, its request attached (built only here:
        parsing its URL costs about a quarter of a request's CPU on the wire)."""
        request = httpx.Request(method, self.origin + url)
        kind: type[httpx.TransportError]
        if not sent:
            kind = httpx.ConnectTimeout if isinstance(exc, TimeoutError) else httpx.ConnectError
        elif isinstance(exc, TimeoutError):
            kind = httpx.ReadTimeout
        elif isinstance(exc, http.client.HTTPException):
            kind = httpx.RemoteProtocolError
        else:
            kind = httpx.ReadError
        error = kind(str(exc) or type(exc).__name__, request=request)
        error.__cause__ = exc
        return Failure(error, sent)


def read_response(status: int, headers: list[tuple[str, str]], content: bytes) -> httpx.Response:
    """An ``httpx.Response`` of a body already read whole, as httpx leaves one it has read
    (``content``, ``json()``, ``text`` at hand, its stream consumed). ``httpx.Response(...,
    content=...)`` would run the body through httpx's stream and decoders once more: that took
    about two thirds of the CPU of building the response, and 5 % of a busy worker's
    (``benchmarks/RESULTS.md``). No decoding is skipped: the wire asks for no compression."""
    response = httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))
    response._content = content  # what httpx's own read() keeps
    response.is_stream_consumed = True
    return response


def _open(conn: http.client.HTTPConnection) -> bool:
    """Whether a keep-alive connection is still open: one the server has closed reads as ready
    (EOF), and is dropped, as httpcore does, rather than sent a request. ``poll``, not
    ``select``, which fails for a descriptor past 1023."""
    if conn.sock is None:
        return False
    poll = select.poll()
    poll.register(conn.sock, select.POLLIN)
    return not poll.poll(0)


def _close_all(conns: list[tuple[http.client.HTTPConnection, float]]) -> None:
    for conn, _since in conns:
        conn.close()
