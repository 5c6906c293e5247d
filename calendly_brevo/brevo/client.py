"""Brevo API v3 client on ``httpx``: one attempt per call, under the shared token bucket.

Every request first takes a token of its limit family (``/contacts*`` → ``contacts``,
``POST /events`` → ``events``, everything else → ``other``), then reads Brevo's
``x-sib-ratelimit-*`` headers into the ``BREVO_RATELIMIT_*`` gauges and tightens the bucket:

* a 429 pauses the family for ``reset`` seconds (1 s when Brevo sent none);
* ``remaining: 0`` on a success pauses it for ``reset - 1`` seconds. Brevo's reset is in whole
  seconds, rounded up, so the window may end up to a second sooner than it says; the bucket's
  own spacing already holds our next request past a one-second window, so pausing for the whole
  ``reset`` would only idle the second after every full window.

Outcomes:

=========================================  ==========================================
2xx                                         success (201 vs 204 on upsert: created or not)
429                                         :class:`BrevoTransientError`, ``rate_limited``
                                            (``delay``: reset)
425, 408, 5xx, timeout, network error       :class:`BrevoTransientError` (``delay``: reset,
                                            only when ``remaining`` is 0)
400, 401, 403, 404, other 4xx               :class:`BrevoPermanentError` (``brevo_code``)
=========================================  ==========================================

The client never retries on its own: a custom event must not be sent twice because a POST timed
out after Brevo took it. The worker decides. The one exception is a 400 saying the ``SMS``
number belongs to another contact, which provably changed nothing: the call is repeated once
without ``SMS``, with the number in ``sms_fallback_attribute`` instead.

With no API key the client is dry: it sends nothing, logs the call it would make (emails, phone
numbers and names masked unless ``debug``) and returns a synthetic success. The key never
appears in a log, an error or ``repr``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from structlog.typing import FilteringBoundLogger

from calendly_brevo import brevo_calls
from calendly_brevo.brevo.models import (
    AttributeCategory,
    AttributeType,
    BrevoErrorBody,
    IdentifierType,
    ListChange,
    RateLimitHeaders,
    UpsertResult,
)
from calendly_brevo.config import BrevoSettings, Settings
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError
from calendly_brevo.metrics import (
    BREVO_RATE_LIMITED,
    BREVO_RATELIMIT_LIMIT,
    BREVO_RATELIMIT_REMAINING,
    BREVO_REQUEST_SECONDS,
    BREVO_REQUESTS,
)
from calendly_brevo.pii import is_address, mask_email
from calendly_brevo.ratelimit import TokenBucket, make_token_bucket
from calendly_brevo.times import parse_time

USER_AGENT = "calendly-brevo/0.1"
#: Brevo's cap on emails per list add/remove call.
LIST_CHUNK = 150
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
    if method.upper() == "POST" and path == "/events":
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


def _rfc3339(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class BrevoClient:
    """The Brevo calls the connector makes. One attempt per call; see the module docstring."""

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
        self.__api_key = api_key or None
        self._limiter = limiter
        self.max_wait = max_wait
        self.sms_fallback_attribute = sms_fallback_attribute or None
        self._log: FilteringBoundLogger = logger or structlog.get_logger("calendly_brevo.brevo")
        self.debug = debug

    @classmethod
    def from_settings(
        cls,
        settings: Settings | BrevoSettings,
        limiter: TokenBucket | None = None,
        *,
        http: httpx.Client | None = None,
        debug: bool | None = None,
    ) -> BrevoClient:
        """A client for one-off commands. Without ``limiter`` it gets a bucket of its own
        (in-process: fine for a CLI call, not for workers, which share the Redis bucket)."""
        if isinstance(settings, Settings):
            debug = settings.calendly.debug if debug is None else debug
            settings = settings.brevo
        key = (
            None
            if settings.runs_dry or not settings.api_key
            else settings.api_key.get_secret_value()
        )
        return cls(
            http or make_http_client(settings),
            key,
            limiter or make_token_bucket(settings),
            sms_fallback_attribute=settings.sms_fallback_attribute,
            debug=bool(debug),
        )

    @property
    def dry_run(self) -> bool:
        return self.__api_key is None

    def close(self) -> None:
        """Close the HTTP pool (for one-off clients; the worker's lives as long as it does)."""
        self._http.close()

    def __repr__(self) -> str:
        key = "None" if self.dry_run else "'**********'"
        return f"BrevoClient(base_url={str(self._http.base_url)!r}, api_key={key})"

    # -- contacts ------------------------------------------------------------------------------
    def upsert_contact(
        self,
        email: str,
        attributes: Mapping[str, Any],
        list_ids: Iterable[int] = (),
        unlink_list_ids: Iterable[int] = (),
    ) -> UpsertResult:
        """Create or update by email (``POST /contacts``, ``updateEnabled``). Brevo ignores
        ``unlinkListIds`` there, so list removals follow as ``PUT /contacts/{email}`` (only for
        a contact that already existed)."""
        body: dict[str, Any] = {"email": email, "attributes": dict(attributes)}
        body["updateEnabled"] = True
        if lists := list(list_ids):
            body["listIds"] = lists
        response = self._with_sms_fallback("POST", "/contacts", {}, body)
        result = UpsertResult(created=False, contact_id=None)
        if response is not None and response.status_code == 201:
            data = _json(response)
            raw_id = data.get("id") if isinstance(data, dict) else None
            result = UpsertResult(True, raw_id if isinstance(raw_id, int) else None)
        if (unlink := list(unlink_list_ids)) and not result.created:
            # A contact Brevo just created (201) is on no list but ``listIds``: nothing to unlink.
            self.update_contact(email, unlink_list_ids=unlink)
        return result

    def update_contact(
        self,
        identifier: str | int,
        attributes: Mapping[str, Any] | None = None,
        list_ids: Iterable[int] = (),
        unlink_list_ids: Iterable[int] = (),
        *,
        identifier_type: IdentifierType | None = None,
    ) -> None:
        """``PUT /contacts/{identifier}``; nothing is sent when there is nothing to change."""
        body: dict[str, Any] = {}
        if attributes:
            body["attributes"] = dict(attributes)
        if lists := list(list_ids):
            body["listIds"] = lists
        if unlink := list(unlink_list_ids):
            body["unlinkListIds"] = unlink
        if not body:
            return
        params = {"identifierType": identifier_type} if identifier_type else None
        self._with_sms_fallback(
            "PUT", "/contacts/{identifier}", {"identifier": identifier}, body, params=params
        )

    def get_contact(
        self, identifier: str | int, *, identifier_type: IdentifierType | None = None
    ) -> dict[str, Any] | None:
        """The contact, or ``None`` when Brevo does not know it (404) or in a dry run."""
        params = {"identifierType": identifier_type} if identifier_type else None
        path_args = {"identifier": identifier}
        response = self._call(
            "GET", "/contacts/{identifier}", path_args, params=params, missing_ok=True
        )
        if response is None or response.status_code == 404:
            return None
        data = _json(response)
        return data if isinstance(data, dict) else None

    def delete_contact(self, identifier: str | int) -> bool:
        """``DELETE /contacts/{identifier}``; ``False`` when Brevo does not know the contact
        (404) or in a dry run."""
        path_args = {"identifier": identifier}
        response = self._call("DELETE", "/contacts/{identifier}", path_args, missing_ok=True)
        return response is not None and response.status_code != 404

    def add_to_list(self, list_id: int, emails: Sequence[str]) -> ListChange:
        """Add existing contacts to a list, 150 per call."""
        return self._list_change("add", list_id, emails)

    def remove_from_list(self, list_id: int, emails: Sequence[str]) -> ListChange:
        return self._list_change("remove", list_id, emails)

    def _list_change(self, action: str, list_id: int, emails: Sequence[str]) -> ListChange:
        result = ListChange()
        route = f"/contacts/lists/{{list_id}}/contacts/{action}"
        for start in range(0, len(emails), LIST_CHUNK):
            chunk = list(emails[start : start + LIST_CHUNK])
            response = self._send("POST", route, {"list_id": list_id}, json={"emails": chunk})
            if response is None:
                result.success.extend(chunk)
                continue
            error = BrevoErrorBody.parse(response) if response.status_code == 400 else None
            if (
                error is not None
                and error.code == "invalid_parameter"
                and ("already" in error.message or "does not exist" in error.message)
            ):
                # Brevo answers 400 when *no* email in the call could change: nothing to do.
                result.failure.extend(chunk)
                continue
            self._check(response, "POST", route)
            data = _json(response)
            contacts = data.get("contacts") if isinstance(data, dict) else None
            if isinstance(contacts, dict):
                result.success.extend(str(e) for e in contacts.get("success") or ())
                result.failure.extend(str(e) for e in contacts.get("failure") or ())
            else:
                result.success.extend(chunk)
        return result

    # -- events --------------------------------------------------------------------------------
    def create_event(
        self,
        event_name: str,
        *,
        email: str,
        properties: Mapping[str, Any] | None = None,
        contact_properties: Mapping[str, Any] | None = None,
        event_date: datetime | str | None = None,
    ) -> None:
        """``POST /events`` (starts Brevo automations). Never repeated by the client."""
        body: dict[str, Any] = {"event_name": event_name, "identifiers": {"email_id": email}}
        if contact_properties:
            body["contact_properties"] = dict(contact_properties)
        if properties:
            body["event_properties"] = dict(properties)
        if event_date is not None:
            body["event_date"] = (
                event_date.isoformat() if isinstance(event_date, datetime) else event_date
            )
        self._call("POST", "/events", {}, json=body)

    def event_recorded(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        property_value: str,
        max_scan: int = 1000,
    ) -> bool:
        """Whether Brevo already holds ``event_name`` with ``property_name == property_value``.

        ``GET /events`` (custom events only), filtered by name and, when ``event_date`` is known,
        by a two-minute window around it (Brevo orders and filters events by ``event_date``).
        It scans at most ``max_scan`` events. Used before sending an event again after an attempt
        whose outcome is unknown (a timeout, or a worker that died after sending)."""
        params: dict[str, Any] = {"event_name": event_name}
        when = parse_time(event_date)
        if when is not None:
            params["startDate"] = _rfc3339(when - timedelta(minutes=1))
            params["endDate"] = _rfc3339(when + timedelta(minutes=1))
        seen = 0
        while seen < max_scan:
            limit = min(100, max_scan - seen)
            response = self._call(
                "GET", "/events", {}, params={**params, "limit": limit, "offset": seen}
            )
            data = _json(response) if response is not None else None
            page = data.get("events") if isinstance(data, dict) else None
            if not isinstance(page, list) or not page:
                return False
            for item in page:
                properties = item.get("event_properties") if isinstance(item, dict) else None
                if isinstance(properties, dict) and properties.get(property_name) == property_value:
                    return True
            seen += len(page)
            count = data.get("count") if isinstance(data, dict) else None
            if len(page) < limit or (isinstance(count, int) and seen >= count):
                return False
        return False

    # -- account setup -------------------------------------------------------------------------
    def get_attributes(self) -> list[dict[str, Any]]:
        response = self._call("GET", "/contacts/attributes", {})
        data = _json(response) if response is not None else None
        attributes = data.get("attributes") if isinstance(data, dict) else None
        return (
            [a for a in attributes if isinstance(a, dict)] if isinstance(attributes, list) else []
        )

    def create_attribute(
        self,
        category: AttributeCategory,
        name: str,
        type_: AttributeType | None = None,
        enumeration: Sequence[tuple[int, str]] | None = None,
    ) -> None:
        """``POST /contacts/attributes/{category}/{name}``; ``enumeration`` as (value, label)."""
        body: dict[str, Any] = {}
        if type_ is not None:
            body["type"] = type_
        if enumeration:
            body["enumeration"] = [{"value": v, "label": label} for v, label in enumeration]
        route = "/contacts/attributes/{category}/{name}"
        self._call("POST", route, {"category": category, "name": name}, json=body)

    def get_lists(self) -> list[dict[str, Any]]:
        """Every contact list, 50 per page."""
        lists: list[dict[str, Any]] = []
        while True:
            params = {"limit": 50, "offset": len(lists)}
            response = self._call("GET", "/contacts/lists", {}, params=params)
            data = _json(response) if response is not None else None
            page = data.get("lists") if isinstance(data, dict) else None
            if not isinstance(page, list) or not page:
                return lists
            lists.extend(item for item in page if isinstance(item, dict))
            count = data.get("count") if isinstance(data, dict) else None
            if not isinstance(count, int) or len(lists) >= count or len(page) < 50:
                return lists

    def get_account(self) -> dict[str, Any]:
        response = self._call("GET", "/account", {})
        data = _json(response) if response is not None else None
        return data if isinstance(data, dict) else {}

    # -- plumbing ------------------------------------------------------------------------------
    def _with_sms_fallback(
        self,
        method: str,
        route: str,
        path_args: Mapping[str, str | int],
        body: dict[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response | None:
        response = self._send(method, route, path_args, json=body, params=params)
        attributes: dict[str, Any] = body.get("attributes") or {}
        if (
            response is not None
            and response.status_code == 400
            and attributes.get("SMS")
            and BrevoErrorBody.parse(response).is_sms_conflict()
        ):
            fallback = {k: v for k, v in attributes.items() if k != "SMS"}
            if self.sms_fallback_attribute:
                fallback[self.sms_fallback_attribute] = attributes["SMS"]
            self._log.warning(
                "brevo.sms_conflict",
                route=route,
                retry_without_sms=True,
                sms_fallback_attribute=self.sms_fallback_attribute,
            )
            body = {**body, "attributes": fallback}
            response = self._send(method, route, path_args, json=body, params=params)
        if response is not None:
            self._check(response, method, route)
        return response

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
        if self.__api_key is None:
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
            self._limiter.acquire(family, self.max_wait)
        started = time.perf_counter()
        try:
            response = self._http.request(
                method, path, json=json, params=params, headers={"api-key": self.__api_key}
            )
        except _TRANSIENT_HTTPX as exc:
            self._observe(family, "error", started)
            brevo_calls.note(method, route, "error", started)
            raise BrevoTransientError(
                f"Brevo {method} {route}: {type(exc).__name__} {exc}".strip(),
                status=None,
                maybe_applied=not isinstance(exc, _NOT_SENT_HTTPX),
            ) from exc
        self._observe(family, str(response.status_code), started)
        brevo_calls.note(method, route, response.status_code, started)
        self._tighten(family, response)
        return response

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


def client_for(services: object, settings: Settings) -> BrevoClient | None:
    """The client a one-off command or admin call uses: the ``brevo_client`` injected on
    ``services`` (tests), else a real one for ``settings``; ``None`` in a dry run."""
    injected = getattr(services, "brevo_client", None)
    if injected is not None:
        return injected  # type: ignore[no-any-return]
    if settings.dry_run:
        return None
    return BrevoClient.from_settings(settings)
