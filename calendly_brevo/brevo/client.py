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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from calendly_brevo.brevo.models import (
    AttributeCategory,
    AttributeType,
    BrevoErrorBody,
    IdentifierType,
    ListChange,
    UpsertResult,
)
from calendly_brevo.brevo.transport import (
    USER_AGENT,
    Transport,
    _json,
    family_of,
    make_http_client,
    redact,
)
from calendly_brevo.config import BrevoSettings, Settings
from calendly_brevo.ratelimit import TokenBucket, make_token_bucket
from calendly_brevo.times import parse_time

__all__ = ["USER_AGENT", "BrevoClient", "client_for", "family_of", "make_http_client", "redact"]

#: Brevo's cap on emails per list add/remove call.
LIST_CHUNK = 150


#: An in-doubt lookup reads the events dated this close to the event's own ``event_date``.
LOOKUP_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True)
class EventScan:
    """What ``GET /events`` showed of one custom event name (:meth:`BrevoClient.scan_events`):
    the values of one property on the events dated ``start`` to ``end`` (``None``: any date),
    every one of them if ``complete`` (else the scan stopped early)."""

    event_name: str
    start: datetime | None
    end: datetime | None
    values: frozenset[str]
    complete: bool

    def covers(self, event_name: str, event_date: str | None) -> bool:
        """Whether every ``event_name`` event a lookup for ``event_date`` reads was read here
        (its value is in :attr:`values` if Brevo held it then)."""
        if not self.complete or event_name != self.event_name:
            return False
        if self.start is None or self.end is None:
            return True  # every date was read
        when = parse_time(event_date)
        if when is None:
            return False
        return self.start <= when - LOOKUP_MARGIN and when + LOOKUP_MARGIN <= self.end


def _rfc3339(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(
    event_name: str,
    *,
    email: str,
    properties: Mapping[str, Any] | None = None,
    contact_properties: Mapping[str, Any] | None = None,
    event_date: datetime | str | None = None,
) -> dict[str, Any]:
    """One custom event as ``POST /events`` takes it (and each item of ``/events/batch``)."""
    body: dict[str, Any] = {"event_name": event_name, "identifiers": {"email_id": email}}
    if contact_properties:
        body["contact_properties"] = dict(contact_properties)
    if properties:
        body["event_properties"] = dict(properties)
    if event_date is not None:
        body["event_date"] = (
            event_date.isoformat() if isinstance(event_date, datetime) else event_date
        )
    return body


def upsert_body(
    email: str, attributes: Mapping[str, Any], list_ids: Iterable[int] = ()
) -> dict[str, Any]:
    """The body of ``POST /contacts`` that creates or updates ``email``."""
    body: dict[str, Any] = {"email": email, "attributes": dict(attributes)}
    body["updateEnabled"] = True
    if lists := list(list_ids):
        body["listIds"] = lists
    return body


class BrevoClient(Transport):
    """The Brevo calls the connector makes. One attempt per call; see the module docstring."""

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

    # -- contacts ------------------------------------------------------------------------------
    def upsert_contact(
        self,
        email: str,
        attributes: Mapping[str, Any],
        list_ids: Iterable[int] = (),
        unlink_list_ids: Iterable[int] = (),
        *,
        existing: bool = False,
    ) -> UpsertResult:
        """Create or update by email (``POST /contacts``, ``updateEnabled``). Brevo ignores
        ``unlinkListIds`` there, so list removals follow as ``PUT /contacts/{email}`` (only for
        a contact that already existed). ``existing`` is for the coalescing port (this client
        sends one call either way)."""
        body = upsert_body(email, attributes, list_ids)
        response = self._with_sms_fallback("POST", "/contacts", {}, body)
        return self.upserted(email, response, unlink_list_ids)

    def upserted(
        self, email: str, response: httpx.Response | None, unlink_list_ids: Iterable[int] = ()
    ) -> UpsertResult:
        """What an accepted ``POST /contacts`` of :func:`upsert_body` did; the list removals
        it cannot make follow as ``PUT /contacts/{email}`` (see :meth:`upsert_contact`)."""
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
        body = event_body(
            event_name,
            email=email,
            properties=properties,
            contact_properties=contact_properties,
            event_date=event_date,
        )
        self.post_event(body)

    def post_event(self, body: Mapping[str, Any]) -> None:
        """``POST /events`` with a body from :func:`event_body`."""
        self._call("POST", "/events", {}, json=dict(body))

    def event_recorded(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        property_value: str,
        max_scan: int = 1000,
    ) -> bool:
        """Whether Brevo already holds ``event_name`` with ``property_name == property_value``
        (:meth:`scan_events`, stopping at the first match). Used before sending an event again
        after an attempt whose outcome is unknown (a timeout, or a worker that died after
        sending)."""
        scan = self.scan_events(
            event_name,
            event_date=event_date,
            property_name=property_name,
            until=property_value,
            max_scan=max_scan,
        )
        return property_value in scan.values

    def scan_events(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        until: str | None = None,
        max_scan: int = 1000,
    ) -> EventScan:
        """The values of ``property_name`` on the ``event_name`` events Brevo holds around
        ``event_date``: ``GET /events`` (custom events only), filtered by name and, when
        ``event_date`` is known, by a two-minute window around it (Brevo orders and filters
        events by ``event_date``), page by page, at most ``max_scan`` events; ``until``: stop
        at the page that holds that value."""
        params: dict[str, Any] = {"event_name": event_name}
        when = parse_time(event_date)
        start = end = None
        if when is not None:
            start, end = when - LOOKUP_MARGIN, when + LOOKUP_MARGIN
            params["startDate"] = _rfc3339(start)
            params["endDate"] = _rfc3339(end)
        seen = 0
        values: set[str] = set()
        while seen < max_scan:
            limit = min(100, max_scan - seen)
            response = self._call(
                "GET", "/events", {}, params={**params, "limit": limit, "offset": seen}
            )
            data = _json(response) if response is not None else None
            page = data.get("events") if isinstance(data, dict) else None
            if not isinstance(page, list) or not page:  # the end, or an answer it cannot read
                done = isinstance(page, list) or (isinstance(data, dict) and "events" not in data)
                return EventScan(event_name, start, end, frozenset(values), complete=done)
            for item in page:
                properties = item.get("event_properties") if isinstance(item, dict) else None
                value = properties.get(property_name) if isinstance(properties, dict) else None
                if isinstance(value, str):
                    values.add(value)
            seen += len(page)
            count = data.get("count") if isinstance(data, dict) else None
            if len(page) < limit or (isinstance(count, int) and seen >= count):
                return EventScan(event_name, start, end, frozenset(values), complete=True)
            if until is not None and until in values:
                break
        return EventScan(event_name, start, end, frozenset(values), complete=False)

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


def client_for(services: object, settings: Settings) -> BrevoClient | None:
    """The client a one-off command or admin call uses: the ``brevo_client`` injected on
    ``services`` (tests), else a real one for ``settings``; ``None`` in a dry run."""
    injected = getattr(services, "brevo_client", None)
    if injected is not None:
        return injected  # type: ignore[no-any-return]
    if settings.dry_run:
        return None
    return BrevoClient.from_settings(settings)
