"""The HTTP side of the Brevo client: one request under the shared token bucket, its metrics,
Brevo's rate-limit headers, and the error an answer means. :class:`BrevoClient` (the calls the
connector makes) and :mod:`calendly_brevo.brevo.bulk` (the bulk endpoints) build on it; see
:mod:`calendly_brevo.brevo.client` for the outcomes table and the dry run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import structlog
from structlog.typing import FilteringBoundLogger

from calendly_brevo import brevo_calls
from calendly_brevo.brevo.models import BrevoErrorBody, RateLimitHeaders
from calendly_brevo.brevo.wire import Failure, Pending, Wire
from calendly_brevo.config import BrevoSettings, Settings
from calendly_brevo.errors import (
    BrevoPermanentError,
    BrevoTransientError,
    RateLimited,
    TransientError,
)
from calendly_brevo.metrics import (
    BREVO_RATE_LIMITED,
    BREVO_RATELIMIT_LIMIT,
    BREVO_RATELIMIT_REMAINING,
    BREVO_REQUEST_SECONDS,
    BREVO_REQUESTS,
)
from calendly_brevo.pii import is_address, mask_email
from calendly_brevo.ratelimit import TokenBucket

USER_AGENT = "calendly-brevo/0.1"
DEFAULT_429_DELAY = 1.0
PII_KEYS = frozenset(
    {"EMAIL", "SMS", "WHATSAPP", "LANDLINE_NUMBER", "FIRSTNAME", "LASTNAME", "EXT_ID"}
    | {"PHONE_ID", "WHATSAPP_ID", "LANDLINE_NUMBER_ID", "EMAIL_ID", "EMAILS", "NAME"}
    | {"PHONE", "PHONE_TEXT"}
)
#: Worth another try later. Other ``httpx`` errors (a bad URL or scheme) are bugs and propagate.
_TRANSIENT_HTTPX = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
#: How long a request under :meth:`Transport.if_free_now` may wait for its token (a free one is
#: granted at once; this only absorbs the clock's step between two reads).
FREE_NOW_WAIT = 0.002


class NotFreeNow(RateLimited):
    """Under :meth:`Transport.if_free_now`: the family's next token is not free now. Nothing was
    reserved or sent."""


#: How many requests :meth:`Transport.send_many` has in flight at once, at most (each on a
#: connection of its own), and how many threads it sends on when httpx must send them.
WAVE = 16
FALLBACK_THREADS = 4

#: Failures before the request left this machine: Brevo cannot have applied it.
_NOT_SENT_HTTPX = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_FIX_401 = (
    "Brevo refused the API key (401): the key is wrong or revoked, or this machine's IP "
    "address is not allow-listed. Fix: check BREVO_API_KEY (a key starts with xkeysib-), and "
    "allow the worker's egress IP at https://app.brevo.com/security/authorised-ips (or turn "
    "off blocking of unknown IP addresses)."
)


def family_of(method: str, path: str) -> str:
    """Brevo's rate-limit family of a request path (relative to ``/v3``)."""
    if path == "/contacts" or path.startswith("/contacts/"):
        return "contacts"
    if method.upper() == "POST" and path in ("/events", "/events/batch"):
        # Brevo's limits table names only POST /events; the batch variant is taken to share
        # its family. Each answer's x-sib-ratelimit-* headers correct the bucket either way.
        return "events"
    return "other"


def make_http_client(
    settings: Settings | BrevoSettings, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The pooled ``httpx.Client`` the worker hands to :class:`BrevoClient` (no key inside)."""
    if isinstance(settings, Settings):
        settings = settings.brevo
    return httpx.Client(
        base_url=settings.api_url,
        timeout=httpx.Timeout(settings.timeout_seconds, connect=min(5.0, settings.timeout_seconds)),
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        headers={"accept": "application/json", "user-agent": USER_AGENT},
        transport=transport,
    )


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of a request body with emails, phone numbers and names masked."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if is_address(value):
            return mask_email(value.strip())
        if key is not None and key.upper() in PII_KEYS:
            return "***"
    return value


def _masked(path_args: Mapping[str, str | int]) -> dict[str, str | int]:
    """Path arguments for a log line: ids stay, emails and other identifiers are masked."""
    return {k: v if isinstance(v, int) else redact(v, "EMAIL") for k, v in path_args.items()}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class Transport:
    """One attempt per request; see :mod:`calendly_brevo.brevo.client`."""

    def __init__(
        self,
        http: httpx.Client,
        api_key: str | None,
        limiter: TokenBucket | None,
        *,
        max_wait: float = 5.0,
        sms_fallback_attribute: str | None = "PHONE_TEXT",
        logger: FilteringBoundLogger | None = None,
        debug: bool = False,
    ) -> None:
        self._http = http
        self._api_key = api_key or None
        self._limiter = limiter
        self.max_wait = max_wait
        self.sms_fallback_attribute = sms_fallback_attribute or None
        self._log: FilteringBoundLogger = logger or structlog.get_logger("calendly_brevo.brevo")
        self.debug = debug
        #: This thread's one-shot token rules: ``free_now`` (:meth:`if_free_now`) and ``held``
        #: (the family of a token :meth:`holding` waited for, not yet spent).
        self._token = threading.local()
        #: When httpx would send straight to Brevo: every request without query parameters,
        #: and many at once from one thread (:meth:`send_many`). Else httpx, on a few threads
        #: (made when first needed) for :meth:`send_many`.
        self._wire = Wire.for_client(http)
        self._fallback: ThreadPoolExecutor | None = None
        self._fallback_lock = threading.Lock()

    @property
    def dry_run(self) -> bool:
        return self._api_key is None

    @contextmanager
    def if_free_now(self) -> Iterator[None]:
        """The next request this thread makes in the block goes only if its family's token is
        free now; else it raises :class:`NotFreeNow` before anything is reserved or sent.
        Requests after it wait for their tokens as usual."""
        self._token.free_now = True
        try:
            yield
        finally:
            self._token.free_now = False

    @contextmanager
    def holding(self, family: str) -> Iterator[None]:
        """Wait for a token of ``family`` now (raises :class:`RateLimited` past ``max_wait``);
        the first request of that family this thread makes in the block spends it instead of
        taking another. A token not spent in the block is simply unused (safe)."""
        if self._limiter is None or self.dry_run:
            yield
            return
        self._limiter.acquire(family, self.max_wait)
        self._token.held = family
        try:
            yield
        finally:
            self._token.held = None

    def close(self) -> None:
        """Close the HTTP pool (for one-off clients; the worker's lives as long as it does)."""
        self._http.close()
        if self._wire is not None:
            self._wire.close()
        if self._fallback is not None:
            self._fallback.shutdown(wait=False)

    def __repr__(self) -> str:
        key = "None" if self.dry_run else "'**********'"
        return f"BrevoClient(base_url={str(self._http.base_url)!r}, api_key={key})"

    def _with_sms_fallback(
        self,
        method: str,
        route: str,
        path_args: Mapping[str, str | int],
        body: dict[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response | None:
        response = self._send(method, route, path_args, json=body, params=params)
        return self.settle_sms(method, route, body, response, path_args, params)

    def settle_sms(
        self,
        method: str,
        route: str,
        body: dict[str, Any],
        response: httpx.Response | None,
        path_args: Mapping[str, str | int] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response | None:
        """``response`` to ``body``, checked (its error raised), after sending ``body`` once
        more without its ``SMS`` number when Brevo refused it for that (:meth:`_without_sms`).
        ``None`` in a dry run."""
        if response is not None and (retry := self._without_sms(route, body, response)):
            response = self._send(method, route, path_args or {}, json=retry, params=params)
        if response is not None:
            self._check(response, method, route)
        return response

    def _without_sms(
        self, route: str, body: dict[str, Any], response: httpx.Response
    ) -> dict[str, Any] | None:
        """The body to send again when Brevo refused ``body`` because its ``SMS`` number
        belongs to another contact: the number moved to ``sms_fallback_attribute`` (or
        dropped). ``None`` for any other answer."""
        attributes: dict[str, Any] = body.get("attributes") or {}
        if not (
            response.status_code == 400
            and attributes.get("SMS")
            and BrevoErrorBody.parse(response).is_sms_conflict()
        ):
            return None
        fallback = {k: v for k, v in attributes.items() if k != "SMS"}
        if self.sms_fallback_attribute:
            fallback[self.sms_fallback_attribute] = attributes["SMS"]
        self._log.warning(
            "brevo.sms_conflict",
            route=route,
            retry_without_sms=True,
            sms_fallback_attribute=self.sms_fallback_attribute,
        )
        return {**body, "attributes": fallback}

    def request(
        self,
        method: str,
        route: str,
        path_args: Mapping[str, str | int] | None = None,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response | None:
        """One request, its answer unchecked (``None`` in a dry run): for callers that read a
        status before :meth:`raise_for` (the bulk endpoints' 207 and 400)."""
        return self._send(method, route, path_args or {}, json=json, params=params)

    def send_many(
        self,
        method: str,
        route: str,
        bodies: Sequence[Any],
        logs: Sequence[brevo_calls.CallLog],
    ) -> list[httpx.Response | Exception | None]:
        """One request per body to ``route`` (no path arguments), all in flight together: each
        one's answer unchecked (``None`` in a dry run), or the :class:`TransientError` it failed
        with (:class:`BrevoTransientError`, or :class:`RateLimited` and the bucket's own before
        it was sent). Each request is noted in its own call log (``logs``,
        one per body). Tokens are reserved together and spent at their slots, so the requests go
        out exactly as one request each would (see :mod:`calendly_brevo.brevo.wire`)."""
        if self._api_key is None or self._wire is None or self._limiter is None:
            return self._through_httpx(method, route, list(zip(bodies, logs, strict=True)))
        family = family_of(method, route)
        answers: list[httpx.Response | Exception | None] = []
        for at in range(0, len(bodies), WAVE):
            wave = range(at, min(at + WAVE, len(bodies)))
            answers += self._wave(method, route, family, [bodies[i] for i in wave], logs[at:])
        return answers

    def _through_httpx(
        self, method: str, route: str, requests: list[tuple[Any, brevo_calls.CallLog]]
    ) -> list[httpx.Response | Exception | None]:
        """:meth:`send_many` through httpx, a few requests at a time on threads of its own."""

        def one(request: tuple[Any, brevo_calls.CallLog]) -> httpx.Response | Exception | None:
            body, log = request
            with brevo_calls.using(log):
                try:
                    return self._send(method, route, {}, json=body)
                except TransientError as exc:  # BrevoTransientError, RateLimited, the bucket
                    return exc

        if len(requests) == 1:
            return [one(requests[0])]
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = ThreadPoolExecutor(FALLBACK_THREADS, "brevo-send")
        return list(self._fallback.map(one, requests))

    def _wave(
        self,
        method: str,
        route: str,
        family: str,
        bodies: Sequence[Any],
        logs: Sequence[brevo_calls.CallLog],
    ) -> list[httpx.Response | Exception | None]:
        assert self._wire is not None and self._limiter is not None and self._api_key is not None
        limiter, wire = self._limiter, self._wire
        dues = limiter.acquire_many(family, len(bodies), self.max_wait)
        sent: list[Pending | Failure | Exception] = []
        for i, body in enumerate(bodies):
            try:
                if i >= len(dues):  # its slot was too far away: queue alone, as a request would
                    limiter.acquire(family, self.max_wait)
                else:
                    limiter.spend(family, dues[i], self.max_wait)
            except TransientError as exc:  # too far away, or the bucket gone: not sent
                sent.append(exc)
                continue
            sent.append(self._write(method, route, body))
        deadline = wire.deadline()
        answers: list[httpx.Response | Exception | None] = []
        for request, log in zip(sent, logs, strict=False):
            outcome: httpx.Response | Failure | Exception
            if isinstance(request, Pending):
                started = request.started
                outcome = wire.finish(request, deadline)
            else:
                started, outcome = time.perf_counter(), request
            if isinstance(outcome, Exception):  # no token: nothing was sent
                answers.append(outcome)
                continue
            with brevo_calls.using(log):
                if isinstance(outcome, Failure):
                    error = outcome.error
                    answers.append(self._lost(method, route, family, error, started, outcome.sent))
                else:
                    answers.append(self._answered(method, route, family, outcome, started))
        return answers

    def call(
        self, method: str, route: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> httpx.Response | None:
        """One request, its error raised as the outcomes table says (``None`` in a dry run)."""
        return self._call(method, route, {}, json=json, params=params)

    def raise_for(self, response: httpx.Response, method: str, route: str) -> None:
        """Raise the error a non-2xx answer means (see the outcomes table)."""
        self._check(response, method, route)

    def _call(
        self,
        method: str,
        route: str,
        path_args: Mapping[str, str | int],
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response | None:
        response = self._send(method, route, path_args, json=json, params=params)
        if response is not None and not (missing_ok and response.status_code == 404):
            self._check(response, method, route)
        return response

    def _send(
        self,
        method: str,
        route: str,
        path_args: Mapping[str, str | int],
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response | None:
        """One request: token, send, metrics, rate-limit headers. ``None`` in a dry run."""
        family = family_of(method, route)
        path = route.format(**{k: quote(str(v), safe="") for k, v in path_args.items()})
        if self._api_key is None:
            shown = path if self.debug else route.format(**_masked(path_args))
            self._log.info(
                "brevo.dry_run",
                method=method,
                path=shown,
                params=dict(params) if params else None,
                body=json if self.debug else redact(json),
            )
            brevo_calls.note(method, route, "dry_run")
            return None
        if self._limiter is not None:
            self._take_token(family)
        started = time.perf_counter()
        if self._wire is not None and not params:
            return self._on_wire(method, route, family, path, json, started)
        try:
            response = self._http.request(
                method, path, json=json, params=params, headers={"api-key": self._api_key}
            )
        except _TRANSIENT_HTTPX as exc:
            sent = not isinstance(exc, _NOT_SENT_HTTPX)
            raise self._lost(method, route, family, exc, started, sent) from exc
        return self._answered(method, route, family, response, started)

    def _on_wire(
        self, method: str, route: str, family: str, path: str, json: Any, started: float
    ) -> httpx.Response:
        """One request on the wire (:mod:`.wire`, less than half of httpx's CPU per request),
        answered or lost as through httpx."""
        assert self._wire is not None
        request = self._write(method, path, json)
        if isinstance(request, Pending):  # the read timeout counts from the request written
            outcome = self._wire.finish(request, self._wire.deadline())
        else:
            outcome = request
        if isinstance(outcome, Failure):
            error = outcome.error
            raise self._lost(method, route, family, error, started, outcome.sent) from error
        return self._answered(method, route, family, outcome, started)

    def _write(self, method: str, path: str, json: Any) -> Pending | Failure:
        """One request written on the wire, its JSON body compact (orjson: UTF-8, about five
        times faster than the standard library's encoder for a batch of custom events), with
        the API key."""
        assert self._wire is not None and self._api_key is not None
        content = None if json is None else orjson.dumps(json, option=orjson.OPT_NON_STR_KEYS)
        return self._wire.start(method, path, content, {"api-key": self._api_key})

    def _answered(
        self, method: str, route: str, family: str, response: httpx.Response, started: float
    ) -> httpx.Response:
        """An answer: counted, noted in the open call log, its rate-limit headers applied."""
        self._observe(family, str(response.status_code), started)
        brevo_calls.note(method, route, response.status_code, started)
        self._tighten(family, response)
        return response

    def _lost(
        self, method: str, route: str, family: str, error: BaseException, started: float, sent: bool
    ) -> BrevoTransientError:
        """No answer (a timeout, the network): counted and noted as ``error``; the retry it
        means, in doubt when the request may have reached Brevo (``sent``)."""
        self._observe(family, "error", started)
        brevo_calls.note(method, route, "error", started)
        return BrevoTransientError(
            f"Brevo {method} {route}: {type(error).__name__} {error}".strip(),
            status=None,
            maybe_applied=sent,
        )

    def _take_token(self, family: str) -> None:
        """The token for one request: the one :meth:`holding` waited for, one free now
        (:meth:`if_free_now`), or the next from the bucket, waiting up to ``max_wait``."""
        assert self._limiter is not None
        token = self._token
        if getattr(token, "held", None) == family:
            token.held = None
        elif getattr(token, "free_now", False):
            token.free_now = False
            try:
                self._limiter.acquire(family, FREE_NOW_WAIT)
            except RateLimited as busy:
                raise NotFreeNow(family, busy.delay or 0.0) from None
        else:
            self._limiter.acquire(family, self.max_wait)

    def _observe(self, family: str, status: str, started: float) -> None:
        BREVO_REQUESTS.labels(family, status).inc()
        BREVO_REQUEST_SECONDS.labels(family).observe(time.perf_counter() - started)

    def _tighten(self, family: str, response: httpx.Response) -> None:
        limits = RateLimitHeaders.parse(response.headers)
        if limits.limit is not None:
            BREVO_RATELIMIT_LIMIT.labels(family).set(limits.limit)
        if limits.remaining is not None:
            BREVO_RATELIMIT_REMAINING.labels(family).set(limits.remaining)
        if self._limiter is None:
            return
        if response.status_code == 429:
            BREVO_RATE_LIMITED.labels(family).inc()
            delay = limits.reset if limits.reset else DEFAULT_429_DELAY
            self._limiter.pause(family, delay)
            self._log.warning("brevo.rate_limited", family=family, pause_seconds=delay)
        elif limits.remaining == 0 and limits.reset is not None and limits.reset > 1:
            self._limiter.pause(family, limits.reset - 1)

    def _check(self, response: httpx.Response, method: str, route: str) -> None:
        """Raise the right error for anything but a 2xx."""
        status = response.status_code
        if 200 <= status < 300:
            return
        where = f"Brevo {method} {route}"
        limits = RateLimitHeaders.parse(response.headers)
        if status == 429:
            delay = limits.reset if limits.reset else DEFAULT_429_DELAY
            raise BrevoTransientError(f"{where}: 429 too many requests", status=429, delay=delay)
        if status in (408, 425) or status >= 500:
            # ``reset`` says when the quota refills, not when the server recovers: a hint only
            # when the quota is spent (an hour-long window would otherwise delay a 502 by 60 s).
            retry_in = limits.reset if limits.remaining == 0 else None
            raise BrevoTransientError(
                f"{where}: HTTP {status}",
                status=status,
                delay=retry_in,
                maybe_applied=status == 504,
            )
        error = BrevoErrorBody.parse(response)
        code = error.code or None
        if status == 401:
            raise BrevoPermanentError(f"{where}: {_FIX_401}", status=401, brevo_code=code)
        detail = f"{error.code}: {error.message}" if error.code else error.message
        hint = {
            403: "permission denied (the key or the plan does not allow this call)",
            404: "not found (a list, contact or attribute that does not exist)",
        }.get(status, "rejected")
        raise BrevoPermanentError(
            f"{where}: HTTP {status} {hint}: {detail}".rstrip(": "), status=status, brevo_code=code
        )
