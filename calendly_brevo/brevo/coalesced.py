"""The worker's Brevo port with coalescing (``brevo.batch``): the same calls as
:class:`~calendly_brevo.brevo.client.BrevoClient`, but custom events and updates of contacts
Brevo already holds wait up to ``brevo.batch.window_ms`` for other worker threads' calls and go
out together through the bulk endpoints (:mod:`calendly_brevo.brevo.bulk`), one token per HTTP
call. Every caller still gets its own item's answer, so the pipeline's exactly-once discipline
(record the effect, then ack; look up an in-doubt event before resending) is unchanged.

New contacts (the pipeline has never pushed them) go through the single upsert, which creates
them; so does a contact a batch finds missing (see :mod:`~calendly_brevo.brevo.bulk`). With
``brevo.batch.live_imports``, a first-time contact is still created alone when a contacts
token is free at that moment (the quickest way, and a token nobody else was waiting for); when
the family is busy, first-time contacts that arrive together (at least
:data:`~calendly_brevo.brevo.imports.IMPORT_MIN`) are imported instead and read back
(:mod:`~calendly_brevo.brevo.imports`); the callers wait until Brevo shows their contact, so the
event still follows its contact, and a contact not shown is created alone.

The requests a batch's sender made are shared with every call the batch carried, so each
event's trace (:mod:`calendly_brevo.brevo_calls`) shows the batch request that carried it (and,
when Brevo refused the batch as a whole, the single calls it was split into).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext, suppress
from datetime import datetime
from functools import partial
from typing import Any

from calendly_brevo import brevo_calls
from calendly_brevo.brevo.batching import Coalescer, Crowd, Limits
from calendly_brevo.brevo.bulk import ContactUpdate, send_events, update_contacts, upsert_one
from calendly_brevo.brevo.client import BrevoClient, EventScan, event_body
from calendly_brevo.brevo.imports import IMPORT_MIN, import_contacts, importable
from calendly_brevo.brevo.models import UpsertResult
from calendly_brevo.brevo.transport import NotFreeNow
from calendly_brevo.config.batch import BatchSettings
from calendly_brevo.errors import BrevoTransientError

#: An item's result, the sending thread and the requests it made for the batch.
Shared = tuple[Any, int, list[dict[str, Any]]]


def _sharing(send: Callable[[list[Any]], Sequence[Any]]) -> Callable[[list[Any]], list[Any]]:
    """``send``, with the requests it made attached to every item's result (an exception
    carries them in ``shared_calls``)."""

    def sending(items: list[Any]) -> list[Any]:
        calls: list[dict[str, Any]] = []
        sender = threading.get_ident()
        try:
            with brevo_calls.made_during(calls):
                results = send(items)
        except Exception as exc:
            exc.__dict__["shared_calls"] = (sender, calls)
            raise
        shared: list[Any] = []
        for result in results:
            if isinstance(result, BaseException):
                result.__dict__["shared_calls"] = (sender, calls)
                shared.append(result)
            else:
                shared.append((result, sender, calls))
        return shared

    return sending


def _take(coalescer: Coalescer[Any, Shared], item: Any) -> Any:
    """Submit ``item``; its result, after taking the requests made for it into this thread's
    call log when another thread sent them."""
    me = threading.get_ident()
    try:
        value, sender, calls = coalescer.submit(item)
    except Exception as exc:
        sender, calls = exc.__dict__.get("shared_calls", (me, []))
        if sender != me:
            brevo_calls.adopt(calls)
        raise
    if sender != me:
        brevo_calls.adopt(calls)
    return value


def _lost(endpoint: str) -> BrevoTransientError:
    return BrevoTransientError(
        f"Brevo {endpoint} batch: no answer from the thread that sent it",
        maybe_applied=True,
    )


def _imported(client: BrevoClient, updates: list[ContactUpdate], confirm: float) -> list[bool]:
    """Per update, whether an import brought it (too few to pay for an import and its read:
    none, each is created alone)."""
    if len(updates) < IMPORT_MIN:
        return [False] * len(updates)
    return import_contacts(client, updates, confirm_seconds=confirm).confirmed


def _json_size(body: Mapping[str, Any]) -> int:
    return len(json.dumps(body, separators=(",", ":"), default=str)) + 1


class CoalescingBrevo:
    """A :class:`~worker.pipeline.BrevoPort` over ``client`` that batches (see the module)."""

    def __init__(
        self,
        client: BrevoClient,
        batch: BatchSettings,
        *,
        patience: float,
        crowd: Crowd | None = None,
    ) -> None:
        """``patience``: how long a waiting call trusts its batch's sender (longer than a
        request can take: the HTTP timeout plus the bucket's wait). ``crowd``: the worker's
        calls in progress (a batch leaves early once all of them wait on one)."""
        if client.dry_run:  # nothing is sent, so nothing to batch: use the client itself
            raise ValueError("CoalescingBrevo needs a client with an API key (not a dry run)")
        self.client = client
        self.crowd = crowd
        window = batch.window_seconds
        self._events: Coalescer[dict[str, Any], Shared] = Coalescer(
            "events",
            _sharing(lambda bodies: send_events(client, bodies)),
            Limits(window, batch.max_events, batch.max_event_bytes, _json_size),
            gave_up=lambda: _lost("events"),
            patience=patience,
            crowd=crowd,
            ticket=lambda _items: client.holding("events"),
        )
        self._contacts: Coalescer[ContactUpdate, Shared] = Coalescer(
            "contacts",
            _sharing(lambda updates: update_contacts(client, updates)),
            Limits(window, batch.max_contacts),
            gave_up=lambda: _lost("contacts"),
            patience=patience,
            crowd=crowd,
            ticket=lambda _items: client.holding("contacts"),
        )
        self._imports: Coalescer[ContactUpdate, Shared] | None = None
        if batch.live_imports and batch.max_import:
            confirm = batch.import_confirm_seconds
            self._imports = Coalescer(
                "import",
                _sharing(lambda updates: _imported(client, updates, confirm)),
                Limits(window, batch.max_import),
                gave_up=lambda: _lost("import"),
                # the import, its reads for up to ``confirm`` seconds, and the last read
                patience=2 * patience + confirm,
                crowd=crowd,
                # too few to import (each is created alone): no token to hold for them
                ticket=lambda items: (
                    client.holding("contacts") if items >= IMPORT_MIN else nullcontext()
                ),
            )

    @property
    def dry_run(self) -> bool:
        return self.client.dry_run

    def upsert_contact(
        self,
        email: str,
        attributes: Mapping[str, Any],
        list_ids: Iterable[int] = (),
        unlink_list_ids: Iterable[int] = (),
        *,
        existing: bool = False,
    ) -> UpsertResult:
        """``existing``: the connector pushed this contact before, so a batch update can take
        it (else the single upsert creates it)."""
        update = ContactUpdate(email, dict(attributes), tuple(list_ids), tuple(unlink_list_ids))
        if not existing:
            alone = partial(upsert_one, self.client, update)
            imports = self._imports
            if imports is not None and importable(update):
                # A token free now: the single upsert costs nothing that would be used
                # otherwise, and is the quickest. Only a busy contacts family makes a
                # first-time contact wait for an import.
                with suppress(NotFreeNow), self.client.if_free_now():
                    return alone()
                if _take(imports, update):
                    return UpsertResult(created=False, contact_id=None)
            return alone()
        result: UpsertResult = _take(self._contacts, update)
        return result

    def create_event(
        self,
        event_name: str,
        *,
        email: str,
        properties: Mapping[str, Any] | None = None,
        contact_properties: Mapping[str, Any] | None = None,
        event_date: datetime | str | None = None,
    ) -> None:
        body = event_body(
            event_name,
            email=email,
            properties=properties,
            contact_properties=contact_properties,
            event_date=event_date,
        )
        _take(self._events, body)

    def scan_events(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        until: str | None = None,
    ) -> EventScan:
        return self.client.scan_events(
            event_name, event_date=event_date, property_name=property_name, until=until
        )

    def close(self) -> None:
        self.client.close()
