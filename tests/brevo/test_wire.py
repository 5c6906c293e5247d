"""Many requests in flight from one thread (``Transport.send_many``, ``bulk.upsert_each``): the
group pass's new contacts.

Against the tests' fake Brevo (a real HTTP server that checks every request against Brevo's
OpenAPI spec) and against small scripted HTTP servers for what a real network does: answers that
only come once every request is in, connections refused, answers lost or never sent, and
keep-alive connections the server has closed.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from calendly_brevo import brevo_calls
from calendly_brevo.brevo.bulk import ContactUpdate, upsert_each
from calendly_brevo.brevo.client import BrevoClient, make_http_client, upsert_body
from calendly_brevo.brevo.wire import Wire, read_response
from calendly_brevo.config import Bucket
from calendly_brevo.errors import BrevoTransientError, RateLimited, TransientError
from calendly_brevo.ratelimit import MemoryBackend, TokenBucket
from tests.fakes.brevo import running_fake_brevo
from tests.ratelimit.test_bucket import FakeClock

KEY = "xkeysib-wire-test"
FAMILIES = ("contacts", "events", "other")


def bucket(rate: float = 1000, burst: int = 1000, clock: FakeClock | None = None) -> TokenBucket:
    buckets = {f: Bucket(rate=rate, burst=burst) for f in FAMILIES}
    if clock is None:
        return TokenBucket(MemoryBackend(), buckets)
    return TokenBucket(MemoryBackend(clock=clock), buckets, clock=clock, sleep=clock.sleep)


OPEN: list[BrevoClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def client_for(base_url: str, *, timeout: float = 5.0, limiter: TokenBucket | None = None) -> Any:
    http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout))
    client = BrevoClient(http, KEY, limiter or bucket())
    OPEN.append(client)
    return client


def logs(n: int) -> list[brevo_calls.CallLog]:
    return [brevo_calls.CallLog(1) for _ in range(n)]


def contact(i: int, **attributes: Any) -> ContactUpdate:
    return ContactUpdate(f"person{i}@example.com", {"FIRSTNAME": f"P{i}", **attributes}, (7,), ())


# -- a scripted HTTP/1.1 server ---------------------------------------------------------------
Handler = Callable[[http.server.BaseHTTPRequestHandler, bytes], None]


@contextmanager
def scripted(handle: Handler) -> Iterator[str]:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 whose every POST ``handle`` answers (or not);
    yields its base URL."""

    class Answer(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            handle(self, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    finally:
        server.shutdown()
        server.server_close()


def created(request: http.server.BaseHTTPRequestHandler, *, close: bool = False) -> None:
    payload = b'{"id": 1}'
    request.send_response(201)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(payload)))
    request.send_header("x-sib-ratelimit-limit", "10")
    request.send_header("x-sib-ratelimit-remaining", "9")
    request.send_header("x-sib-ratelimit-reset", "1")
    request.end_headers()
    request.wfile.write(payload)
    request.wfile.flush()
    if close:  # the server drops the connection without saying so (no Connection: close)
        request.close_connection = True


# -- against the fake Brevo ---------------------------------------------------------------------
def test_new_contacts_are_created_one_request_each_noted_in_each_ones_own_call_log() -> None:
    with running_fake_brevo(api_key=KEY, lists={7: "Booked"}) as brevo:
        brevo.set_limit("contacts", 1000, 1.0)  # twenty at once: this bucket is not Brevo's
        client = client_for(brevo.base_url)
        assert client._wire is not None  # the fake is reached directly: the wire is used
        # More than one wave; names in UTF-8 (the wire's JSON is not ASCII-escaped).
        updates = [contact(i, LASTNAME=f"Ødegård-Müller {i} 日本") for i in range(20)]
        calls = logs(20)
        answers = upsert_each(client, updates, calls)
        assert [a.created for a in answers] == [True] * 20
        for update in updates:
            stored = brevo.state.contact(update.email)
            assert stored is not None and 7 in stored.list_ids
            assert stored.attributes["FIRSTNAME"] == update.attributes["FIRSTNAME"]
            assert stored.attributes["LASTNAME"] == update.attributes["LASTNAME"]
        assert [[(c["route"], c["status"]) for c in log.calls] for log in calls] == [
            [("/contacts", "201")]
        ] * 20
        assert brevo.state.violations == []


def test_a_number_another_contact_holds_is_sent_again_without_it_as_one_upsert_would() -> None:
    with running_fake_brevo(api_key=KEY, lists={7: "Booked"}) as brevo:
        brevo.add_attribute("PHONE_TEXT")  # sms_fallback_attribute's default
        client = client_for(brevo.base_url)
        upsert_each(client, [contact(0, SMS="+31612345678")], logs(1))
        calls = logs(2)
        answers = upsert_each(
            client, [contact(1, SMS="+31612345678"), contact(2, SMS="+31687654321")], calls
        )
        assert [a.created for a in answers] == [True, True]
        taken = brevo.state.contact("person1@example.com")
        assert taken is not None and "SMS" not in taken.attributes
        assert taken.attributes.get("PHONE_TEXT") == "+31612345678"
        assert [c["status"] for c in calls[0].calls] == ["400", "201"]
        assert [c["status"] for c in calls[1].calls] == ["201"]
        assert brevo.state.violations == []


def test_a_contact_brevo_already_held_gets_its_list_removals_as_a_put_afterwards() -> None:
    with running_fake_brevo(api_key=KEY, lists={7: "Booked", 8: "Cancelled"}) as brevo:
        client = client_for(brevo.base_url)
        client.upsert_contact("person0@example.com", {"FIRSTNAME": "P0"}, [8])
        update = ContactUpdate("person0@example.com", {"FIRSTNAME": "P0"}, (7,), (8,))
        calls = logs(1)
        [answer] = upsert_each(client, [update], calls)
        assert answer.created is False
        stored = brevo.state.contact("person0@example.com")
        assert stored is not None and stored.list_ids == {7}
        assert [(c["route"], c["status"]) for c in calls[0].calls] == [
            ("/contacts", "204"),
            ("/contacts/{identifier}", "204"),
        ]


def test_a_single_call_goes_on_the_wire_and_one_with_query_parameters_through_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_fake_brevo(api_key=KEY, lists={7: "Booked"}) as brevo:
        client = client_for(brevo.base_url)
        through_httpx: list[str] = []
        request = client._http.request

        def noted(method: str, url: str, **kwargs: Any) -> httpx.Response:
            through_httpx.append(f"{method} {url}")
            answer: httpx.Response = request(method, url, **kwargs)
            return answer

        monkeypatch.setattr(client._http, "request", noted)
        calls = logs(1)
        with brevo_calls.using(calls[0]):
            assert client.upsert_contact("person0@example.com", {"FIRSTNAME": "P0"}, [7]).created
            client.create_event("meeting_booked", email="person0@example.com")
            contact = client.get_contact("person0@example.com")  # a path argument, quoted
            assert contact is not None and contact["email"] == "person0@example.com"
            assert client.get_contact("nobody@example.com") is None  # a 404, no body sent
            assert client.delete_contact("person0@example.com") is True
        assert through_httpx == []
        assert [c["status"] for c in calls[0].calls] == ["201", "204", "200", "404", "204"]
        client.event_recorded(
            "meeting_booked",
            event_date=None,
            property_name="invitee_uri",
            property_value="https://api.calendly.com/x",
        )
        assert through_httpx == ["GET /events"]  # query parameters: httpx encodes them
        assert brevo.state.violations == []


def test_a_single_call_whose_answer_is_lost_is_in_doubt_and_a_refused_one_is_not() -> None:
    def lose(request: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        request.close_connection = True  # read, maybe applied, never answered

    with scripted(lose) as url, pytest.raises(BrevoTransientError) as lost:
        client_for(url).create_event("meeting_booked", email="person0@example.com")
    assert lost.value.maybe_applied is True
    # The httpx error it stands for, as through httpx ("server disconnected").
    assert isinstance(lost.value.__cause__, httpx.RemoteProtocolError)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens here once the socket is closed
    with pytest.raises(BrevoTransientError) as refused:
        client_for(f"http://127.0.0.1:{port}/v3").create_event(
            "meeting_booked", email="person0@example.com"
        )
    assert refused.value.maybe_applied is False
    cause = refused.value.__cause__  # what a command reads to name the URL it cannot reach
    assert isinstance(cause, httpx.ConnectError)
    assert str(cause.request.url) == f"http://127.0.0.1:{port}/v3/events"


# -- what a network does ------------------------------------------------------------------------
def test_every_request_of_a_wave_is_in_flight_before_any_answer_comes() -> None:
    """The server answers none until it holds all eight: requests sent one after another (each
    waiting for its answer) would each wait out the barrier and get a 503."""
    everyone = threading.Barrier(8, timeout=10)

    def together(request: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        try:
            everyone.wait()
        except threading.BrokenBarrierError:
            request.send_error(503)
            return
        created(request)

    with scripted(together) as url:
        answers = upsert_each(client_for(url), [contact(i) for i in range(8)], logs(8))
    assert [a.created for a in answers] == [True] * 8


def test_a_refused_connection_is_never_sent_so_nothing_is_in_doubt() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens here once the socket is closed
    calls = logs(3)
    answers = upsert_each(
        client_for(f"http://127.0.0.1:{port}/v3"), [contact(i) for i in range(3)], calls
    )
    for answer in answers:
        assert isinstance(answer, BrevoTransientError) and answer.maybe_applied is False
    assert [[c["status"] for c in log.calls] for log in calls] == [["error"]] * 3


def test_an_answer_lost_after_the_request_left_puts_that_contact_in_doubt_alone() -> None:
    seen: list[bytes] = []

    def lose_the_second(request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        seen.append(body)
        if b"person1@" in body:
            request.close_connection = True  # read, maybe applied, never answered
            return
        created(request)

    with scripted(lose_the_second) as url:
        answers = upsert_each(client_for(url), [contact(i) for i in range(3)], logs(3))
    assert answers[0].created and answers[2].created
    assert isinstance(answers[1], BrevoTransientError) and answers[1].maybe_applied is True
    assert len(seen) == 3


def test_answers_that_never_come_end_within_one_timeout_for_the_whole_wave() -> None:
    """Six silent answers with a 0.5 s timeout: the wave ends after about one timeout, not six
    (each answer is read against one deadline)."""
    release = threading.Event()

    def silent(request: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        release.wait(10)
        request.close_connection = True

    with scripted(silent) as url:
        started = time.monotonic()
        answers = upsert_each(client_for(url, timeout=0.5), [contact(i) for i in range(6)], logs(6))
        elapsed = time.monotonic() - started
        release.set()
    for answer in answers:
        assert isinstance(answer, BrevoTransientError) and answer.maybe_applied is True
    assert elapsed < 3 * 0.5  # six timeouts in a row would be 3 s


def test_a_keep_alive_connection_the_server_dropped_is_not_reused() -> None:
    def answer_then_drop(request: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        created(request, close=True)

    with scripted(answer_then_drop) as url:
        client = client_for(url)
        for wave in range(3):
            time.sleep(0.05)  # the server has closed the connections of the wave before
            calls = logs(4)
            answers = upsert_each(client, [contact(wave * 4 + i) for i in range(4)], calls)
            assert [a.created for a in answers] == [True] * 4, answers
            assert [[c["status"] for c in log.calls] for log in calls] == [["201"]] * 4


def test_a_connection_idle_longer_than_the_keep_alive_expiry_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One a NAT may have dropped without a word: a request written into it would be in doubt
    for nothing. A connection idle for less is reused."""
    monkeypatch.setattr("calendly_brevo.brevo.wire.KEEPALIVE_EXPIRY", 0.2)
    peers: list[int] = []

    def note(request: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        peers.append(request.client_address[1])
        created(request)

    with scripted(note) as url:
        client = client_for(url)
        for pause in (0.0, 0.0, 0.4, 0.0):
            time.sleep(pause)
            client.create_event("meeting_booked", email="person0@example.com")
    assert len(peers) == 4
    assert peers[0] == peers[1] != peers[2] == peers[3]


def test_tokens_are_reserved_together_and_each_request_leaves_at_its_own_slot() -> None:
    clock = FakeClock()
    limiter = bucket(rate=10, burst=2, clock=clock)
    with scripted(lambda request, _body: created(request)) as url:
        client = client_for(url, limiter=limiter)
        answers = upsert_each(client, [contact(i) for i in range(4)], logs(4))
    assert [a.created for a in answers] == [True] * 4
    # The burst of two at once, then one spacing (1.04 / 10 s) apart: the bucket's schedule,
    # slept out before each request is written.
    assert [round(s, 3) for s in clock.slept] == [0.208, 0.104]


def test_a_slot_too_far_away_is_that_requests_own_rate_limit() -> None:
    clock = FakeClock()
    limiter = bucket(rate=1, burst=1, clock=clock)
    sent: list[bytes] = []

    def note(request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        sent.append(body)
        created(request)

    with scripted(note) as url:
        client = client_for(url, limiter=limiter)
        client.max_wait = 0.5  # the next slot is 1.04 s away
        answers = upsert_each(client, [contact(i) for i in range(3)], logs(3))
    assert answers[0].created
    assert all(isinstance(a, RateLimited) for a in answers[1:])  # retried later, never sent
    assert len(sent) == 1


def test_a_bucket_gone_mid_wave_fails_the_unsent_alone_and_still_reads_the_sent() -> None:
    class Gone(TokenBucket):
        spent = 0

        def spend(self, family: str, due: float, max_wait: float) -> None:
            self.spent += 1
            if self.spent > 2:
                raise TransientError("token bucket unavailable: Redis went away", delay=1.0)

    limiter = Gone(MemoryBackend(), {f: Bucket(rate=1000, burst=1000) for f in FAMILIES})
    sent: list[bytes] = []

    def note(request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        sent.append(body)
        created(request)

    with scripted(note) as url:
        calls = logs(4)
        answers = upsert_each(
            client_for(url, limiter=limiter), [contact(i) for i in range(4)], calls
        )
    assert [a.created for a in answers[:2]] == [True, True]
    for answer in answers[2:]:
        assert isinstance(answer, TransientError) and not isinstance(answer, BrevoTransientError)
    assert len(sent) == 2
    assert [len(log.calls) for log in calls] == [1, 1, 0, 0]


# -- when the wire is not used ------------------------------------------------------------------
def test_a_proxy_or_a_mounted_transport_sends_through_httpx_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from calendly_brevo.config import BrevoSettings

    with make_http_client(BrevoSettings()) as plain:
        assert Wire.for_client(plain) is not None
    mocked = httpx.MockTransport(lambda r: httpx.Response(204))
    with httpx.Client(base_url="https://api.brevo.com/v3", transport=mocked) as http:
        assert Wire.for_client(http) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    with make_http_client(BrevoSettings()) as proxied:
        assert Wire.for_client(proxied) is None


def test_without_the_wire_each_request_goes_through_httpx_with_the_same_answers() -> None:
    def brevo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"id": 5}, headers={"x-sib-ratelimit-remaining": "9"})

    http = httpx.Client(base_url="https://api.brevo.com/v3", transport=httpx.MockTransport(brevo))
    client = BrevoClient(http, KEY, bucket())
    OPEN.append(client)
    assert client._wire is None
    calls = logs(3)
    answers = upsert_each(client, [contact(i) for i in range(3)], calls)
    assert [(a.created, a.contact_id) for a in answers] == [(True, 5)] * 3
    assert [[c["status"] for c in log.calls] for log in calls] == [["201"]] * 3


def test_the_body_is_what_a_single_upsert_sends() -> None:
    assert upsert_body("a@example.com", {"X": 1}, [3]) == {
        "email": "a@example.com",
        "attributes": {"X": 1},
        "updateEnabled": True,
        "listIds": [3],
    }


@pytest.mark.parametrize(
    ("status", "headers", "content"),
    [
        (
            201,
            [("Content-Type", "application/json"), ("x-sib-ratelimit-remaining", "9")],
            b'{"id": 5}',
        ),
        (204, [("x-sib-ratelimit-reset", "1")], b""),
        (
            400,
            [("Content-Type", "application/json; charset=utf-8")],
            '{"message": "Café"}'.encode(),
        ),
        (502, [("Content-Type", "text/html")], b"<html>Bad gateway</html>"),
    ],
)
def test_an_answer_off_the_wire_reads_as_httpx_reads_the_same_answer(
    status: int, headers: list[tuple[str, str]], content: bytes
) -> None:
    """What callers of the client see of an answer does not depend on which way it came."""
    ours = read_response(status, headers, content)
    theirs = httpx.Response(status, headers=headers, content=content)
    assert ours.status_code == theirs.status_code
    assert ours.headers == httpx.Headers(headers)
    assert ours.content == theirs.content and ours.text == theirs.text
    assert ours.encoding == theirs.encoding and ours.is_success == theirs.is_success
    assert ours.is_stream_consumed and list(ours.iter_bytes()) == list(theirs.iter_bytes())
    if content.startswith(b"{"):
        assert ours.json() == theirs.json()
    ours.close()
    assert ours.is_closed
