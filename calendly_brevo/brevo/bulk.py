"""Brevo's bulk endpoints, with one result per item: what a batch of calls became.

- ``POST /events/batch`` (Brevo changelog 2026-03-03, https://developers.brevo.com/changelog/
  2026/3/3): 202 when every event was accepted; 207 with per-event errors when some failed
  validation. A refused item is that item's :class:`BrevoPermanentError` (its message is
  dead-lettered with Brevo's reason); the accepted ones are sent. Brevo documents a per-event
  breakdown but not its fields: an item a 207 does not clearly accept or refuse is *in doubt*
  (:class:`BrevoTransientError` with ``maybe_applied``), so it is looked up before any resend.
- ``POST /contacts/batch`` (https://developers.brevo.com/reference/update-batch-contacts):
  updates contacts Brevo already holds (attributes, ``listIds``, ``unlinkListIds``); 204, or a
  400 for the whole request with no per-item report.
- A whole request refused with a 400 (one bad item, a contact deleted by hand) changed nothing:
  its items are sent again one by one through the single-item calls, which create a missing
  contact and give each item its own answer.
- A request that failed otherwise (429, 5xx, timeout) is every item's failure; when the answer
  was lost after the request left, every item is in doubt, as a single call would be.

A batch of one is sent through the single-item endpoint (the same cost: one call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from calendly_brevo import brevo_calls
from calendly_brevo.brevo.client import upsert_body
from calendly_brevo.brevo.models import UpsertResult
from calendly_brevo.brevo.transport import _json
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError
from calendly_brevo.metrics import BREVO_BATCH_ITEMS_IN_DOUBT, BREVO_BATCHES

if TYPE_CHECKING:
    from calendly_brevo.brevo.client import BrevoClient
    from calendly_brevo.brevo_calls import CallLog

EVENTS_ROUTE = "/events/batch"
CONTACTS_ROUTE = "/contacts/batch"


@dataclass(frozen=True)
class ContactUpdate:
    """One contact Brevo already holds, as ``/contacts/batch`` updates it."""

    email: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    list_ids: tuple[int, ...] = ()
    unlink_list_ids: tuple[int, ...] = ()

    def item(self) -> dict[str, Any]:
        body: dict[str, Any] = {"email": self.email}
        if self.attributes:
            body["attributes"] = dict(self.attributes)
        if self.list_ids:
            body["listIds"] = list(self.list_ids)
        if self.unlink_list_ids:
            body["unlinkListIds"] = list(self.unlink_list_ids)
        return body


def send_events(client: BrevoClient, bodies: Sequence[dict[str, Any]]) -> list[Any]:
    """Send custom events (``POST /events`` bodies); one result per body: ``None`` (sent) or
    the exception that event's caller raises."""
    return _bulk(
        client,
        _Endpoint("events", EVENTS_ROUTE, "events", client.post_event, None),
        list(bodies),
        list(bodies),
    )


def update_contacts(client: BrevoClient, updates: Sequence[ContactUpdate]) -> list[Any]:
    """Update contacts Brevo holds; one result per update: an :class:`UpsertResult` or the
    exception that update's caller raises. A 400 changed nothing (an unknown contact, deleted
    by hand, or one bad item): one by one, an upsert re-creates the contact and a bad item
    fails alone."""
    updated = UpsertResult(created=False, contact_id=None)
    single = partial(upsert_one, client)
    endpoint = _Endpoint("contacts", CONTACTS_ROUTE, "contacts", single, updated)
    return _bulk(client, endpoint, list(updates), [u.item() for u in updates])


@dataclass(frozen=True)
class _Endpoint:
    name: str
    route: str
    #: The request body's key for the items.
    key: str
    #: The single-item call, for a batch of one and for a batch refused as a whole.
    single: Callable[[Any], Any]
    #: Each item's result when the request was accepted.
    accepted: Any


def _bulk(client: BrevoClient, endpoint: _Endpoint, items: list[Any], body: list[Any]) -> list[Any]:
    name, count = endpoint.name, len(items)
    if count == 1:
        return [_one(lambda: endpoint.single(items[0]))]
    try:
        response = client.request("POST", endpoint.route, json={endpoint.key: body})
    except BrevoTransientError as exc:
        return _failed(name, exc, count)
    if response is None:  # dry run
        return [endpoint.accepted] * count
    if response.status_code == 207:
        return _partial(endpoint, _json(response), count)
    if response.status_code == 400:  # refused as a whole, nothing changed: one by one
        BREVO_BATCHES.labels(name, "split").inc()
        return [_one(lambda item=item: endpoint.single(item)) for item in items]
    try:
        client.raise_for(response, "POST", endpoint.route)
    except BrevoTransientError as exc:
        return _failed(name, exc, count)
    except BrevoPermanentError:
        BREVO_BATCHES.labels(name, "failed").inc()
        raise
    BREVO_BATCHES.labels(name, "accepted").inc()
    return [endpoint.accepted] * count


def upsert_one(client: BrevoClient, update: ContactUpdate) -> UpsertResult:
    """``update`` as a single upsert, which creates the contact when Brevo lacks it."""
    return client.upsert_contact(
        update.email,
        update.attributes,
        list_ids=update.list_ids,
        unlink_list_ids=update.unlink_list_ids,
    )


def upsert_each(
    client: BrevoClient, updates: Sequence[ContactUpdate], logs: Sequence[CallLog]
) -> list[Any]:
    """Each of ``updates`` as a single upsert (:func:`upsert_one`), all in flight together
    (:meth:`~calendly_brevo.brevo.transport.Transport.send_many`), each request noted in its own
    call log: per update, its :class:`UpsertResult` or the exception its own caller raises.
    A number that belongs to another contact is sent again without it, as one upsert would."""
    bodies = [upsert_body(u.email, u.attributes, u.list_ids) for u in updates]
    answers: list[Any] = []
    route = "/contacts"
    for update, body, log, response in zip(
        updates, bodies, logs, client.send_many("POST", route, bodies, logs), strict=True
    ):
        with brevo_calls.using(log):
            try:
                if isinstance(response, Exception):
                    raise response
                response = client.settle_sms("POST", route, body, response)
                answers.append(client.upserted(update.email, response, update.unlink_list_ids))
            except Exception as exc:  # the update's own answer, raised by its own caller
                answers.append(exc)
    return answers


def _one(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:  # the item's own answer, raised by its own caller
        return exc


def _failed(endpoint: str, exc: BrevoTransientError, count: int) -> list[Any]:
    if exc.maybe_applied:
        BREVO_BATCHES.labels(endpoint, "in_doubt").inc()
        BREVO_BATCH_ITEMS_IN_DOUBT.labels(endpoint).inc(count)
    else:
        BREVO_BATCHES.labels(endpoint, "failed").inc()
    return [exc] * count  # the coalescer hands each caller its own copy


def _partial(endpoint: _Endpoint, data: Any, count: int) -> list[Any]:
    """A 207: each refused item its error, the others sent, unless the answer does not add up
    (an error without a valid index, or a ``count`` of accepted items that disagrees), in
    which case every item not refused is in doubt."""
    BREVO_BATCHES.labels(endpoint.name, "partial").inc()
    errors = data.get("errors") if isinstance(data, dict) else None
    refused: dict[int, str] = {}
    clear = isinstance(errors, list)
    for error in errors if isinstance(errors, list) else ():
        index = error.get("index") if isinstance(error, dict) else None
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count:
            refused[index] = str(error.get("message") or "refused")
        else:
            clear = False
    accepted = data.get("count") if isinstance(data, dict) else None
    if isinstance(accepted, int) and accepted != count - len(refused):
        clear = False
    results: list[Any] = []
    for index in range(count):
        if index in refused:
            results.append(
                BrevoPermanentError(
                    f"Brevo POST {endpoint.route}: item refused (207): {refused[index]}",
                    status=207,
                    brevo_code="batch_item_refused",
                )
            )
        elif clear:
            results.append(None)
        else:
            BREVO_BATCH_ITEMS_IN_DOUBT.labels(endpoint.name).inc()
            results.append(
                BrevoTransientError(
                    f"Brevo POST {endpoint.route}: a 207 that does not say whether this item "
                    "was accepted",
                    status=207,
                    maybe_applied=True,
                )
            )
    return results
