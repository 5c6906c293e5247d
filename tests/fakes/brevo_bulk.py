"""Brevo's bulk endpoints in the fake: ``POST /events/batch``, ``POST /contacts/batch``,
``POST /contacts/import`` and ``GET /processes/{processId}``.

Documented behaviour (sources in ``spec/post-events-batch.yaml`` and reference/brevo-api.md
§1.4) and the fake's own decisions where Brevo says nothing:

- ``/events/batch``: at most 200 events and 512 KB a request (Brevo's guide). Every valid item is
  recorded as ``POST /events`` would; an item that fails (a name outside ``[A-Za-z0-9_-]``, no
  identifier, one the test named with :meth:`FakeBrevo.reject_batch_items`, or one a sticky
  ``400`` fault rule on ``POST /events`` picks or stuck to) is skipped.
  All accepted: 202 ``{"message", "count"}``. Some failed: 207 with ``"errors": [{"index",
  "message"}]`` — Brevo documents a per-event breakdown but not its fields, so a client must treat
  a 207 item it cannot attribute as in doubt. A lost answer is the generic ``timeout`` fault
  with ``apply_effect``: the whole batch applied, no answer.
- ``/contacts/batch`` updates existing contacts only (no create flag exists). An item naming a
  contact the account does not hold: the fake refuses the whole request, 400
  ``document_not_found``, and changes nothing (Brevo documents no per-item report). 204 otherwise.
- ``/contacts/import`` (``jsonBody``): 202 ``{"processId"}``; the contacts are applied at once
  (``updateExistingContacts`` default true, attributes merged, ``listIds`` added), and
  ``GET /processes/{id}`` reports ``in_process`` for :attr:`FakeBrevo.import_polls_in_process`
  polls, then ``completed``. Unknown attributes are ignored, as Brevo says for imports. With
  :attr:`FakeBrevo.import_delay_seconds` the rows land that much later (Brevo's imports are
  asynchronous), and rows in :attr:`FakeBrevo.import_skips` never do.
- ``GET /contacts`` lists contacts, a page at a time, filtered by ``modifiedSince`` and the
  rest of the spec's query (what the connector reads back to confirm an import).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.brevo_events import create_event, instant
from tests.fakes.brevo_faults import FaultRecord, pick_fault
from tests.fakes.brevo_ops import (
    BrevoError,
    Reply,
    create_contact,
    find_contact,
    update_contact,
)
from tests.fakes.brevo_state import FakeBrevo, iso_now

MAX_BATCH_EVENTS = 200
MAX_BATCH_BYTES = 512 * 1024
_EVENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_ID_FIELDS = ("email_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id", "contact_id")


def _item_problem(state: FakeBrevo, item: dict[str, Any]) -> str | None:
    name = item.get("event_name")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        return "event_name: alphanumerical characters, - and _ only, at most 255"
    identifiers = item.get("identifiers") or {}
    if not any(identifiers.get(f) for f in _ID_FIELDS):
        return "identifiers: at least one identifier is required"
    tag = (item.get("event_properties") or {}).get("connector_event_id")
    if tag is not None and str(tag) in state.rejected_batch_items:
        return "Injected item failure"
    return None


def _injected_item_fault(state: FakeBrevo, item: dict[str, Any], seq: int) -> str | None:
    """A sticky ``400`` rule that matches ``POST /v3/events`` holds for the same event inside a
    batch too (a validation error belongs to the event, not to how it travels): it fires on the
    item (a new 207 failure, recorded as the rule's fault) or repeats for an event it stuck to."""
    rules = [r for r in state.fault_rules if r.kind == "400" and r.sticky is not None]
    picked = pick_fault(rules, state.rng, "POST", "/v3/events", "events", item)
    if picked is None:
        return None
    rule, repeat = picked
    state.faults.append(
        FaultRecord(
            rule.id, "400", seq, "POST", "/v3/events/batch", "events", 207, 0.0, False, repeat
        )
    )
    return "Injected permanent failure"


def create_batch_events(state: FakeBrevo, body: dict[str, Any], seq: int) -> Reply:
    events = body["events"]
    if len(json.dumps(body, separators=(",", ":")).encode()) > MAX_BATCH_BYTES:
        raise BrevoError(400, "invalid_parameter", "request body exceeds 512 KB")
    if len(events) > MAX_BATCH_EVENTS:
        raise BrevoError(400, "invalid_parameter", "at most 200 events a request")
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(events):
        problem = _item_problem(state, item) or _injected_item_fault(state, item, seq)
        if problem is None:
            create_event(state, item, seq)
        else:
            errors.append({"index": index, "message": problem})
    accepted = len(events) - len(errors)
    if errors:
        message = f"{accepted} event(s) accepted, {len(errors)} failed validation"
        return 207, {"message": message, "count": accepted, "errors": errors}
    message = "Batch accepted. Valid events have been added to the processing queue."
    return 202, {"message": message, "count": accepted}


def _batch_identifier(item: dict[str, Any]) -> tuple[str, str | None]:
    if item.get("email"):
        return str(item["email"]), "email_id"
    if item.get("id") is not None:
        return str(item["id"]), "contact_id"
    if item.get("sms"):
        return str(item["sms"]), "phone_id"
    raise BrevoError(400, "missing_parameter", "each contact needs an email, id or sms")


#: What one /contacts/batch item may change (its identifier aside).
_BATCH_FIELDS = (
    "attributes",
    "listIds",
    "unlinkListIds",
    "ext_id",
    "emailBlacklisted",
    "smsBlacklisted",
)


def update_batch_contacts(state: FakeBrevo, body: dict[str, Any], seq: int) -> Reply:
    items = body.get("contacts") or []
    resolved = [_batch_identifier(item) for item in items]
    for identifier, kind in resolved:
        if find_contact(state, identifier, kind) is None:
            raise BrevoError(400, "document_not_found", f"Contact does not exist: {identifier}")
    for item, (identifier, kind) in zip(items, resolved, strict=True):
        update_contact(
            state, identifier, kind, {k: item[k] for k in _BATCH_FIELDS if k in item}, seq
        )
    return 204, None


def import_contacts(state: FakeBrevo, body: dict[str, Any], seq: int) -> Reply:
    rows = body.get("jsonBody")
    if not isinstance(rows, list):
        raise BrevoError(400, "invalid_parameter", "the fake imports jsonBody only")
    list_ids = list(body.get("listIds") or [])
    if not list_ids and not body.get("newList"):
        raise BrevoError(400, "missing_parameter", "listIds is mandatory without newList")
    update_existing = body.get("updateExistingContacts", True)
    due = state.clock() + state.import_delay_seconds
    state.pending_imports.append((due, rows, list_ids, update_existing))
    apply_due_imports(state, seq)
    process_id = state.next_process_id()
    state.processes[process_id] = {
        "id": process_id,
        "name": "import",
        "polls_left": state.import_polls_in_process,
        "created_at": iso_now(state.clock),
    }
    return 202, {"processId": process_id}


def apply_due_imports(state: FakeBrevo, seq: int) -> None:
    """Apply the imports whose time has come (see :attr:`FakeBrevo.import_delay_seconds`)."""
    now = state.clock()
    due = [p for p in state.pending_imports if p[0] <= now]
    state.pending_imports = [p for p in state.pending_imports if p[0] > now]
    known = set(state.attributes)
    for _, rows, list_ids, update_existing in due:
        for row in rows:
            email = row.get("email")
            if not email or email.lower() in state.import_skips:
                continue
            attributes = {k: v for k, v in (row.get("attributes") or {}).items() if k in known}
            exists = state.contact(email) is not None
            if exists and not update_existing:
                continue
            payload = {"attributes": attributes, "listIds": list_ids}
            if exists:
                update_contact(state, email, "email_id", payload, seq)
            else:
                create_contact(state, {"email": email, **payload}, seq)


def list_contacts(state: FakeBrevo, query: Any, seq: int) -> Reply:
    """``GET /contacts``: ``limit`` (≤ 1000), ``offset``, ``modifiedSince``, ``createdSince``,
    ``sort`` (by creation), ``listIds``; ``{"contacts": [...], "count": n}`` (the spec's
    ``getContacts``)."""
    apply_due_imports(state, seq)
    limit = int(query.get("limit", 50))
    if not 0 <= limit <= 1000:
        raise BrevoError(400, "out_of_range", "limit must be between 0 and 1000")
    offset = int(query.get("offset", 0))
    chosen = list(state.contacts.values())
    for key, attr in (("modifiedSince", "modified_at"), ("createdSince", "created_at")):
        if key in query:
            since = instant(query[key], key)
            chosen = [c for c in chosen if instant(getattr(c, attr), attr) > since]
    if "listIds" in query:
        wanted = {int(v) for v in query.getall("listIds")}
        chosen = [c for c in chosen if c.list_ids & wanted]
    chosen.sort(key=lambda c: c.id, reverse=query.get("sort", "desc") == "desc")
    page = chosen[offset : offset + limit]
    return 200, {"contacts": [c.to_json() for c in page], "count": len(chosen)}


def get_process(state: FakeBrevo, process_id: int) -> Reply:
    process = state.processes.get(process_id)
    if process is None:
        raise BrevoError(404, "document_not_found", "Process does not exist")
    status = "completed"
    if process["polls_left"] > 0:
        process["polls_left"] -= 1
        status = "in_process"
    return 200, {"id": process_id, "name": process["name"], "status": status}
