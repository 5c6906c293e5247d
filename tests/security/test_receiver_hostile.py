"""Hostile input to the receiver: whatever arrives, the answer is 2xx/4xx (never 5xx), nothing
is enqueued without a valid signature, memory stays bounded and a slow client cannot hold it."""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calendly_brevo.signature import HEADER, sign
from tests import payloads
from tests.conftest import SIGNING_KEY, make_settings
from tests.security.server import ThreadedReceiver, serving

MAX_BODY = 64 * 1024
CONFIG = f"""
connectors:
  calendly:
    webhook:
      max_body_bytes: {MAX_BODY}
      read_timeout_seconds: 1.0
"""
GOOD = payloads.body(payloads.invitee_created(email="ada@example.com"))
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedReceiver]:
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "c.yaml").write_text(CONFIG)
    with serving(make_settings(tmp, CONNECTOR_CONFIG=tmp / "c.yaml")) as server:
        yield server


@pytest.fixture(scope="module")
def http(receiver: ThreadedReceiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=receiver.url, timeout=10) as client:
        yield client


def post(http: httpx.Client, body: bytes, headers: dict[str, Any]) -> httpx.Response:
    return http.post("/webhooks/calendly", content=body, headers=headers)


def signed(body: bytes, t: int | None = None) -> dict[str, Any]:
    return {HEADER: sign(SIGNING_KEY, body, int(time.time()) if t is None else t)}


# --- signature headers -------------------------------------------------------------------------
header_bytes = st.binary(max_size=3000).filter(
    lambda b: not any(c in b for c in (b"\r", b"\n", b"\x00"))
)
header_text = st.lists(
    st.tuples(
        st.sampled_from(["t", "v1", "v0", "T", "v1 ", " t", "", "v2", "t=t"]),
        st.one_of(
            st.text(max_size=80).map(lambda s: s.encode("utf-8", "replace").decode("latin-1")),
            st.integers().map(str),
            st.from_regex(r"[0-9a-fA-F]{60,70}", fullmatch=True),
        ),
    ),
    max_size=12,
).map(lambda parts: ",".join(f"{k}={v}" for k, v in parts))


@FUZZ
@given(header=st.one_of(header_bytes, header_text), body=st.binary(max_size=2048))
def test_any_signature_header_without_the_key_gets_a_4xx_and_is_never_enqueued(
    receiver: ThreadedReceiver, http: httpx.Client, header: bytes | str, body: bytes
) -> None:
    before = len(receiver.queue.items)
    raw = header.encode("latin-1") if isinstance(header, str) else header
    try:
        r = post(http, body, {HEADER: raw})
    except httpx.LocalProtocolError:
        return  # httpx itself refuses to send this header; nothing reached the server
    assert r.status_code in (400, 401, 413), r.text
    assert len(receiver.queue.items) == before


@FUZZ
@given(body=st.one_of(st.binary(max_size=4096), st.text(max_size=2000).map(str.encode)))
def test_any_signed_body_gets_202_only_when_it_is_an_event_object(
    receiver: ThreadedReceiver, http: httpx.Client, body: bytes
) -> None:
    before = len(receiver.queue.items)
    r = post(http, body, signed(body))
    assert r.status_code in (202, 400), r.text
    try:
        doc = json.loads(body.decode("utf-8"))
        ok = (
            isinstance(doc, dict)
            and isinstance(doc.get("event"), str)
            and isinstance(doc.get("payload"), dict)
        )
    except (ValueError, RecursionError):
        ok = False
    assert (r.status_code == 202) == ok
    assert len(receiver.queue.items) == before + (1 if ok else 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)


@FUZZ
@given(
    event=st.one_of(st.text(max_size=40), json_values),
    payload=json_values,
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
)
def test_signed_json_of_any_shape_is_answered_without_a_5xx(
    receiver: ThreadedReceiver,
    http: httpx.Client,
    event: object,
    payload: object,
    extra: dict[str, object],
) -> None:
    body = json.dumps({**extra, "event": event, "payload": payload}).encode()
    r = post(http, body, signed(body))
    expected = 202 if isinstance(event, str) and isinstance(payload, dict) else 400
    assert r.status_code == expected, r.text


def test_one_right_v1_among_several_wrong_ones_is_accepted(
    receiver: ThreadedReceiver, http: httpx.Client
) -> None:
    t = int(time.time())
    right = sign(SIGNING_KEY, GOOD, t).split("v1=")[1]
    wrong = [sign(f"other-key-{i}", GOOD, t).split("v1=")[1] for i in range(5)]
    header = f"t={t}," + ",".join(f"v1={v}" for v in [*wrong[:3], right, *wrong[3:]])
    assert post(http, GOOD, {HEADER: header}).status_code == 202
    only_wrong = f"t={t}," + ",".join(f"v1={v}" for v in wrong)
    assert post(http, GOOD, {HEADER: only_wrong}).status_code == 401
    # The right HMAC under another timestamp proves nothing.
    moved = f"t={t - 1},v1={right}"
    assert post(http, GOOD, {HEADER: moved}).status_code == 401
    # Two timestamps are ambiguous: refused.
    twice = f"t={t},t={t},v1={right}"
    assert post(http, GOOD, {HEADER: twice}).status_code == 401


def test_a_signature_over_a_prefix_of_the_body_does_not_cover_the_rest(
    receiver: ThreadedReceiver, http: httpx.Client
) -> None:
    before = len(receiver.queue.items)
    truncated = GOOD[: len(GOOD) // 2]
    assert post(http, GOOD, signed(truncated)).status_code == 401
    assert post(http, truncated, signed(GOOD)).status_code == 401
    assert len(receiver.queue.items) == before


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "",
        "\u00e9/\u00e9",
    ],
)
def test_the_content_type_changes_nothing_the_signed_bytes_decide(
    receiver: ThreadedReceiver, http: httpx.Client, content_type: str
) -> None:
    headers = signed(GOOD) | {"Content-Type": content_type.encode("utf-8")}
    assert post(http, GOOD, headers).status_code == 202
    assert post(http, b"a=1&b=2", signed(b"a=1&b=2") | headers).status_code in (400, 401)


@pytest.mark.parametrize(
    "body",
    [
        b'{"event":"invitee.created","payload":{"email":"\xff\xfe@x.com"}}',
        b'{"event":"invitee.created","payload":{"name":"\xed\xa0\x80"}}',  # a lone surrogate
        b"\xef\xbb\xbf" + GOOD,  # a UTF-8 byte order mark
        GOOD.decode().encode("utf-16"),  # json.loads(bytes) would take UTF-16
        GOOD.decode().encode("utf-32-le"),
        b'{"event":"invitee.created","payload":' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
        b"[" * 200_000,
        b'{"event":"invitee.created","payload":{}' + b" " * 60_000 + b"}",
        b'{"event":"invitee.created","event":"x","payload":{}}',
        b'{"event":"invitee.created","payload":{"n":1e999999}}',
        b'{"event":"invitee.created","payload":{"n":' + b"9" * 5000 + b"}}",
    ],
)
def test_invalid_utf8_and_deeply_nested_json_get_a_4xx_or_202_never_a_5xx(
    receiver: ThreadedReceiver, http: httpx.Client, body: bytes
) -> None:
    r = post(http, body, signed(body))
    assert r.status_code in (202, 400, 413), r.text


def test_a_huge_body_is_refused_whether_or_not_it_announces_its_length(
    receiver: ThreadedReceiver, http: httpx.Client
) -> None:
    huge = b'{"event":"invitee.created","payload":{"x":"' + b"a" * (4 * MAX_BODY) + b'"}}'
    assert post(http, huge, signed(huge)).status_code == 413

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 8192):
            yield huge[start : start + 8192]

    r = http.post("/webhooks/calendly", content=chunks(), headers=signed(huge))
    assert r.status_code == 413


def test_memory_stays_bounded_across_many_huge_requests(
    receiver: ThreadedReceiver, http: httpx.Client
) -> None:
    huge = b"x" * (2 * 1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    tracemalloc.start()
    try:
        for i in range(30):
            body = chunks() if i % 2 else huge
            r = http.post("/webhooks/calendly", content=body, headers=signed(huge))
            assert r.status_code == 413
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The client's own 2 MiB body is in the trace; the server adds at most about one limit.
    assert peak < len(huge) + 8 * MAX_BODY + 2 * 1024 * 1024, peak


def _raw(receiver: ThreadedReceiver) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
    return sock


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_a_slow_client_gets_408_and_does_not_hold_up_other_requests(
    receiver: ThreadedReceiver, http: httpx.Client
) -> None:
    before = len(receiver.queue.items)
    head = (
        f"POST /webhooks/calendly HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{HEADER}: {sign(SIGNING_KEY, GOOD, int(time.time()))}\r\n"
        f"Content-Length: {len(GOOD)}\r\n\r\n"
    ).encode()
    sock = _raw(receiver)
    started = time.monotonic()
    try:
        sock.sendall(head)
        sock.settimeout(0.2)
        answered = 0
        for byte in GOOD[:40]:  # one byte every 0.1 s: the whole body would take minutes
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            # Meanwhile the server keeps answering everyone else at once.
            t = time.monotonic()
            assert http.get("/healthz").status_code == 200
            assert time.monotonic() - t < 1.0
            try:
                answered = _read_status(sock)
                break
            except TimeoutError:
                time.sleep(0.1)
        assert answered == 408
        assert time.monotonic() - started < 5
    finally:
        sock.close()
    assert len(receiver.queue.items) == before


def test_a_truncated_body_times_out_and_a_dropped_connection_changes_nothing(
    receiver: ThreadedReceiver, http: httpx.Client
) -> None:
    before = len(receiver.queue.items)
    head = (
        f"POST /webhooks/calendly HTTP/1.1\r\nHost: x\r\n"
        f"{HEADER}: {sign(SIGNING_KEY, GOOD, int(time.time()))}\r\n"
        f"Content-Length: {len(GOOD)}\r\n\r\n"
    ).encode()
    sock = _raw(receiver)
    sock.sendall(head + GOOD[:-10])
    sock.settimeout(5)
    assert _read_status(sock) == 408
    sock.close()
    sock = _raw(receiver)
    sock.sendall(head + GOOD[:-10])
    sock.close()  # the client vanishes mid-body
    time.sleep(0.3)
    assert http.get("/healthz").status_code == 200
    assert len(receiver.queue.items) == before


def test_garbage_and_half_requests_on_the_socket_never_stop_the_server(
    receiver: ThreadedReceiver, http: httpx.Client
) -> None:
    for junk in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain port
        b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n",
        b"POST /webhooks/calendly HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /webhooks/calendly HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /webhooks/calendly HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /webhooks/calendly HTTP/1.1\r\nHost: x\r\n",  # headers never finish
    ):
        sock = _raw(receiver)
        sock.sendall(junk)
        sock.settimeout(2)
        try:
            status = _read_status(sock)
        except TimeoutError:
            status = 0  # still waiting for the rest of the headers: only this socket waits
        assert status == 0 or 400 <= status < 500, (junk[:40], status)
        sock.close()
        assert http.get("/healthz").status_code == 200


def test_a_captured_request_replayed_after_the_tolerance_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "connectors:\n  calendly:\n    webhook:\n      tolerance_seconds: 1\n"
    )
    with (
        serving(make_settings(tmp_path, CONNECTOR_CONFIG=tmp_path / "c.yaml")) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        captured = signed(GOOD)
        assert post(client, GOOD, captured).status_code == 202
        time.sleep(2.2)
        r = post(client, GOOD, captured)
        assert r.status_code == 401
        assert r.json()["reason"] == "stale"
        assert len(server.queue.items) == 1
