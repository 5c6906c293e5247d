"""A small synchronous Calendly API v2 client over an ``httpx.Client`` the caller owns.

- Auth: a :class:`TokenProvider` gives the bearer token: :class:`StaticToken` for a Personal
  Access Token, :class:`calendly_brevo.calendly.tokens.OAuthTokenProvider` for OAuth (it refreshes
  before expiry, and once more when Calendly answers 401).
- Pagination: ``count`` (max 100) and ``page_token``; list methods are generators, and
  :meth:`CalendlyClient.pages` exposes page tokens for resumable walks.
- Rate limits: Calendly sends ``X-RateLimit-Limit/Remaining/Reset`` (Reset = seconds until the
  window resets). A 429 on a GET or DELETE waits ``Reset`` seconds (capped) and retries, up to
  ``max_retries`` times; when ``Remaining`` hits 0 the next request waits for the reset first.
  POSTs are not retried on 429 (the caller decides): they raise :class:`CalendlyTransientError`.
- Errors: Calendly's body ``{title, message, details[]}`` becomes the message of a
  :class:`CalendlyPermanentError` subclass, with the fix for the usual causes (401, 403).

Weakness, said plainly: the limiter is per client, not shared between processes; Calendly's limit
is per user and generous (500/min on paid plans), and our callers (CLI walks, doctor) are serial.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from calendly_brevo.config import DEFAULT_CALENDLY_API_URL
from calendly_brevo.errors import (
    CalendlyAuthError,
    CalendlyConflict,
    CalendlyForbidden,
    CalendlyNotFound,
    CalendlyPermanentError,
    CalendlyTransientError,
)
from calendly_brevo.metrics import CALENDLY_REQUESTS

PAT_URL = "https://calendly.com/integrations/api_webhooks"
MAX_COUNT = 100
UNAUTHORIZED_FIX = (
    f"token expired or lacks scopes: generate a new PAT at {PAT_URL} or re-run the OAuth flow"
)
FORBIDDEN_FIX = (
    "the token lacks a scope this call needs (give it scheduled_events:read, event_types:read, "
    "webhooks:write, scheduling_links:write, users:read) or the Calendly plan does not include "
    "this feature (webhooks need Professional or higher on older accounts); organization-scope "
    "webhooks and organization-wide lists also need an owner or admin token"
)
RETRYABLE_METHODS = frozenset({"GET", "DELETE", "HEAD"})
Params = Mapping[str, str | int | None]


class TokenProvider(Protocol):
    def token(self) -> str:
        """A bearer token believed valid now."""
        ...

    def refresh_after_401(self, rejected: str) -> str | None:
        """Calendly rejected ``rejected``: a new token to try once, or None (give up)."""
        ...


class StaticToken:
    """A Personal Access Token. Its repr hides it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(**********)"

    def token(self) -> str:
        return self._token

    def refresh_after_401(self, rejected: str) -> str | None:
        return None


@dataclass(frozen=True)
class Page:
    collection: list[dict[str, Any]]
    #: The token that fetched this page (None for the first page).
    page_token: str | None
    next_page_token: str | None


def uuid_of(uri_or_uuid: str) -> str:
    """``https://api.calendly.com/scheduled_events/ABC`` → ``ABC`` (a bare uuid passes through)."""
    return uri_or_uuid.rstrip("/").rsplit("/", 1)[-1]


def describe_error(status: int, body: Any) -> str:
    """Calendly's ``{title, message, details}`` as one line, plus the fix for 401/403/409."""
    parts: list[str] = []
    if isinstance(body, dict):
        title, message = body.get("title"), body.get("message")
        head = ": ".join(str(p) for p in (title, message) if p)
        if head:
            parts.append(head)
        for d in body.get("details") or []:
            if isinstance(d, dict):
                param = f"{d['parameter']}: " if d.get("parameter") else ""
                parts.append(f"{param}{d.get('message', '')}")
        if body.get("required_scopes"):
            parts.append(f"required scopes: {', '.join(map(str, body['required_scopes']))}")
    detail = "; ".join(parts) or "no error body"
    if status == 401:
        return f"Calendly 401 ({detail}): {UNAUTHORIZED_FIX}"
    if status == 403:
        return f"Calendly 403 ({detail}): {FORBIDDEN_FIX}"
    if status == 404:
        return f"Calendly 404 ({detail}): the resource does not exist or the token cannot see it"
    if status == 409:
        return f"Calendly 409 ({detail}): it already exists"
    return f"Calendly {status} ({detail})"


def _error_for(status: int, body: Any) -> CalendlyPermanentError:
    message = describe_error(status, body)
    cls = {
        401: CalendlyAuthError,
        403: CalendlyForbidden,
        404: CalendlyNotFound,
        409: CalendlyConflict,
    }.get(status, CalendlyPermanentError)
    return cls(message)


class CalendlyClient:
    def __init__(
        self,
        http: httpx.Client,
        tokens: TokenProvider,
        *,
        base_url: str = DEFAULT_CALENDLY_API_URL,
        max_retries: int = 3,
        max_wait: float = 65.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.tokens = tokens
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self._blocked_until = 0.0

    def __repr__(self) -> str:
        return f"CalendlyClient(base_url={self.base_url!r})"

    # -- transport ------------------------------------------------------------------------------
    def url(self, path_or_uri: str) -> str:
        if path_or_uri.startswith(("http://", "https://")):
            return path_or_uri
        return f"{self.base_url}/{path_or_uri.lstrip('/')}"

    def _wait_for_window(self) -> None:
        wait = self._blocked_until - self.clock()
        if wait > 0:
            self.sleep(min(wait, self.max_wait))

    def _note_limits(self, resp: httpx.Response) -> float:
        """Remember an exhausted window; return the seconds until it resets."""
        try:
            reset = float(resp.headers.get("X-RateLimit-Reset", "60"))
        except ValueError:
            reset = 60.0
        reset = max(0.0, min(reset, self.max_wait))
        if resp.headers.get("X-RateLimit-Remaining") == "0" or resp.status_code == 429:
            self._blocked_until = self.clock() + reset
        return reset

    def request(
        self,
        method: str,
        path_or_uri: str,
        *,
        params: Params | None = None,
        json: Any = None,
    ) -> Any:
        """One API call: returns the decoded JSON body (None for 204) or raises."""
        method = method.upper()
        url = self.url(path_or_uri)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        token = self.tokens.token()
        refreshed = False
        attempt = 0
        while True:
            self._wait_for_window()
            try:
                resp = self.http.request(
                    method,
                    url,
                    params=query,
                    json=json,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                )
            except httpx.TransportError as exc:
                CALENDLY_REQUESTS.labels("error").inc()
                raise CalendlyTransientError(
                    f"Calendly {method} {httpx.URL(url).path}: {type(exc).__name__}"
                ) from exc
            CALENDLY_REQUESTS.labels(str(resp.status_code)).inc()
            reset = self._note_limits(resp)
            status = resp.status_code
            if status < 400:
                return resp.json() if status != 204 and resp.content else None
            body = _json_or_none(resp)
            if status == 401 and not refreshed:
                refreshed = True
                new = self.tokens.refresh_after_401(token)
                if new is not None:
                    token = new
                    continue
            retryable = method in RETRYABLE_METHODS and attempt < self.max_retries
            if status == 429:
                if retryable:
                    attempt += 1  # _wait_for_window sleeps until the reset
                    continue
                raise CalendlyTransientError(
                    f"{describe_error(429, body)}: rate limited, retry in {reset:.0f}s",
                    delay=reset,
                    rate_limited=True,
                )
            if status >= 500:
                if retryable:
                    attempt += 1
                    self.sleep(min(2.0**attempt, self.max_wait))
                    continue
                raise CalendlyTransientError(describe_error(status, body), delay=5.0)
            raise _error_for(status, body)

    def get(self, path_or_uri: str, params: Params | None = None) -> Any:
        return self.request("GET", path_or_uri, params=params)

    def resource(self, path_or_uri: str, params: Params | None = None) -> dict[str, Any]:
        body = self.get(path_or_uri, params)
        resource: dict[str, Any] = body["resource"]
        return resource

    def pages(
        self,
        path: str,
        params: Params | None = None,
        *,
        page_token: str | None = None,
        count: int = MAX_COUNT,
    ) -> Iterator[Page]:
        """Every page from ``page_token`` (None = the first) on, following next_page_token."""
        base = dict(params or {})
        base["count"] = max(1, min(count, MAX_COUNT))
        token = page_token
        while True:
            body = self.get(path, {**base, "page_token": token})
            nxt = (body.get("pagination") or {}).get("next_page_token") or None
            yield Page(list(body.get("collection") or []), token, nxt)
            if nxt is None:
                return
            token = nxt

    def paginate(self, path: str, params: Params | None = None) -> Iterator[dict[str, Any]]:
        for page in self.pages(path, params):
            yield from page.collection

    # -- endpoints ------------------------------------------------------------------------------
    def me(self) -> dict[str, Any]:
        return self.resource("users/me")

    def list_event_types(
        self,
        *,
        user: str | None = None,
        organization: str | None = None,
        active: bool | None = None,
    ) -> Iterator[dict[str, Any]]:
        flag = None if active is None else str(active).lower()
        params = {"user": user, "organization": organization, "active": flag, "sort": "name:asc"}
        return self.paginate("event_types", params)

    @staticmethod
    def scheduled_event_params(
        *,
        organization: str | None = None,
        user: str | None = None,
        status: str | None = None,
        min_start_time: str | None = None,
        max_start_time: str | None = None,
        invitee_email: str | None = None,
        sort: str = "start_time:asc",
    ) -> dict[str, str | int | None]:
        return {
            "organization": organization,
            "user": user,
            "status": status,
            "min_start_time": min_start_time,
            "max_start_time": max_start_time,
            "invitee_email": invitee_email,
            "sort": sort,
        }

    def list_scheduled_events(
        self,
        *,
        organization: str | None = None,
        user: str | None = None,
        status: str | None = None,
        min_start_time: str | None = None,
        max_start_time: str | None = None,
        invitee_email: str | None = None,
        sort: str = "start_time:asc",
    ) -> Iterator[dict[str, Any]]:
        params = self.scheduled_event_params(
            organization=organization,
            user=user,
            status=status,
            min_start_time=min_start_time,
            max_start_time=max_start_time,
            invitee_email=invitee_email,
            sort=sort,
        )
        return self.paginate("scheduled_events", params)

    def get_scheduled_event(self, uri_or_uuid: str) -> dict[str, Any]:
        return self.resource(f"scheduled_events/{uuid_of(uri_or_uuid)}")

    def list_invitees(
        self, event_uri_or_uuid: str, *, status: str | None = None
    ) -> Iterator[dict[str, Any]]:
        path = f"scheduled_events/{uuid_of(event_uri_or_uuid)}/invitees"
        return self.paginate(path, {"status": status, "sort": "created_at:asc"})

    def create_scheduling_link(self, owner: str, *, max_event_count: int = 1) -> dict[str, Any]:
        body = {"max_event_count": max_event_count, "owner": owner, "owner_type": "EventType"}
        resource: dict[str, Any] = self.request("POST", "scheduling_links", json=body)["resource"]
        return resource

    def create_webhook_subscription(
        self,
        url: str,
        events: list[str],
        *,
        organization: str,
        scope: str = "organization",
        user: str | None = None,
        signing_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "url": url,
            "events": events,
            "organization": organization,
            "scope": scope,
        }
        if user:
            body["user"] = user
        if signing_key:
            body["signing_key"] = signing_key
        resource: dict[str, Any] = self.request("POST", "webhook_subscriptions", json=body)[
            "resource"
        ]
        return resource

    def list_webhook_subscriptions(
        self, *, organization: str, scope: str = "organization", user: str | None = None
    ) -> Iterator[dict[str, Any]]:
        params = {"organization": organization, "scope": scope, "user": user}
        return self.paginate("webhook_subscriptions", params)

    def get_webhook_subscription(self, uri_or_uuid: str) -> dict[str, Any]:
        return self.resource(f"webhook_subscriptions/{uuid_of(uri_or_uuid)}")

    def delete_webhook_subscription(self, uri_or_uuid: str) -> None:
        self.request("DELETE", f"webhook_subscriptions/{uuid_of(uri_or_uuid)}")

    def get_invitee_no_show(self, uri_or_uuid: str) -> dict[str, Any]:
        return self.resource(f"invitee_no_shows/{uuid_of(uri_or_uuid)}")

    def create_invitee_no_show(self, invitee_uri: str) -> dict[str, Any]:
        body = self.request("POST", "invitee_no_shows", json={"invitee": invitee_uri})
        resource: dict[str, Any] = body["resource"]
        return resource

    def delete_invitee_no_show(self, uri_or_uuid: str) -> None:
        self.request("DELETE", f"invitee_no_shows/{uuid_of(uri_or_uuid)}")

    def sample_webhook_data(
        self, event: str, *, organization: str, scope: str = "organization", user: str | None = None
    ) -> dict[str, Any]:
        params = {"event": event, "organization": organization, "scope": scope, "user": user}
        body: dict[str, Any] = self.get("sample_webhook_data", params)
        return body


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
