"""New contacts in bulk: ``POST /contacts/import``, confirmed by reading them back.

``/contacts/batch`` only updates contacts Brevo holds; the one bulk call that creates them is the
import (https://developers.brevo.com/reference/importcontacts-1): ``jsonBody`` rows of
``{email, attributes}``, the lists for the whole request (``listIds``, mandatory), 202 with a
``processId``. It is asynchronous, and ``GET /processes/{id}`` is in the family Brevo allows
100 requests an *hour*. So the import is confirmed the way the contacts family is cheap: one
``GET /contacts?modifiedSince=…&limit=1000`` lists the contacts Brevo changed since just before
the import, a page of a thousand per request, and a contact counts as imported once it is
listed on every list of its row. A contact not confirmed within ``confirm_seconds`` (Brevo was
slow, or skipped the row: an SMS another contact holds, say) is the caller's to upsert alone,
so nothing rests on the import alone: the cost of a miss is one single call.

``modifiedSince`` is Brevo's clock against this machine's: the read starts
:data:`CLOCK_MARGIN` earlier, and a contact Brevo did not change (it already held the row's
values) is not listed, which again only costs its single upsert.

Only contacts with lists and nothing to unlink fit an import (rows are grouped by their lists:
one request per group); :func:`importable` says which.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from calendly_brevo.brevo.bulk import ContactUpdate
from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.brevo.transport import _json
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError
from calendly_brevo.metrics import BREVO_BATCH_ITEMS, BREVO_BATCHES

IMPORT_ROUTE = "/contacts/import"
#: How far Brevo's clock may run behind this machine's without a contact being missed.
CLOCK_MARGIN = timedelta(seconds=5)
#: Contacts per ``GET /contacts`` page (the spec's maximum).
READ_PAGE = 1000
#: Pauses between confirming reads, the last one repeated until ``confirm_seconds`` pass.
PAUSES = (0.2, 0.5, 1.0, 2.0)


def importable(update: ContactUpdate) -> bool:
    """Whether an import can carry ``update`` (it sets lists, and unlinks none)."""
    return bool(update.list_ids) and not update.unlink_list_ids


@dataclass(frozen=True)
class Imported:
    """Per update, whether Brevo was seen holding it; and the requests that took."""

    confirmed: list[bool]
    requests: int


def import_contacts(
    client: BrevoClient,
    updates: Sequence[ContactUpdate],
    *,
    confirm_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Imported:
    """Import ``updates`` (each :func:`importable`) and read them back (see the module)."""
    since = datetime.now(UTC) - CLOCK_MARGIN
    groups: dict[tuple[int, ...], list[ContactUpdate]] = defaultdict(list)
    for update in updates:
        groups[tuple(sorted(update.list_ids))].append(update)
    waiting: dict[str, set[int]] = {}
    for lists, group in groups.items():
        if _send(client, lists, group):
            waiting.update({u.email.lower(): set(lists) for u in group})
    reads: list[int] = []
    seen = _confirm(client, waiting, since, time.monotonic() + confirm_seconds, sleep, reads)
    BREVO_BATCHES.labels("import", "confirmed").inc(len(seen))
    BREVO_BATCHES.labels("import", "unconfirmed").inc(len(updates) - len(seen))
    confirmed = [u.email.lower() in seen for u in updates]
    return Imported(confirmed, len(groups) + len(reads))


def _send(client: BrevoClient, lists: tuple[int, ...], group: list[ContactUpdate]) -> bool:
    """One import request; whether Brevo took it (202). A failure leaves the group to the
    single upserts (an import is idempotent, so one applied after all does no harm)."""
    body = {
        "jsonBody": [{"email": u.email, "attributes": dict(u.attributes)} for u in group],
        "listIds": list(lists),
        "updateExistingContacts": True,
        "emptyContactsAttributes": False,
        "disableNotification": True,
    }
    BREVO_BATCH_ITEMS.labels("import").observe(len(group))
    try:
        response = client.request("POST", IMPORT_ROUTE, json=body)
        if response is None:  # dry run: the single upserts log what they would do
            return False
        client.raise_for(response, "POST", IMPORT_ROUTE)
    except (BrevoPermanentError, BrevoTransientError):
        BREVO_BATCHES.labels("import", "failed").inc()
        return False
    BREVO_BATCHES.labels("import", "accepted").inc()
    return True


def _confirm(
    client: BrevoClient,
    waiting: dict[str, set[int]],
    since: datetime,
    deadline: float,
    sleep: Callable[[float], None],
    reads: list[int],
) -> set[str]:
    """The emails of ``waiting`` Brevo lists as changed since ``since`` on all their lists,
    reading again after each pause until all are seen or ``deadline`` passes."""
    seen: set[str] = set()
    stamp = since.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for attempt in range(10_000):
        if not waiting.keys() - seen:
            break
        pause = PAUSES[min(attempt, len(PAUSES) - 1)]
        if time.monotonic() + pause > deadline:
            break
        sleep(pause)
        seen |= _read(client, waiting, seen, stamp, reads)
    return seen


def _read(
    client: BrevoClient,
    waiting: dict[str, set[int]],
    seen: set[str],
    stamp: str,
    reads: list[int],
) -> set[str]:
    """One pass over the contacts changed since ``stamp``, a page at a time, stopping once all
    of ``waiting`` are found. A failed read ends the pass (the next pass tries again)."""
    found: set[str] = set()
    offset = 0
    while waiting.keys() - seen - found:
        params = {"modifiedSince": stamp, "limit": READ_PAGE, "offset": offset, "sort": "desc"}
        reads.append(offset)
        try:
            response = client.request("GET", "/contacts", params=params)
            if response is None:
                return found
            client.raise_for(response, "GET", "/contacts")
        except (BrevoPermanentError, BrevoTransientError):
            return found
        data = _json(response)
        contacts = data.get("contacts") if isinstance(data, dict) else None
        if not isinstance(contacts, list) or not contacts:
            return found
        for contact in contacts:
            email = str(contact.get("email") or "").lower() if isinstance(contact, dict) else ""
            lists = contact.get("listIds") if isinstance(contact, dict) else None
            if email in waiting and waiting[email] <= set(lists or ()):
                found.add(email)
        if len(contacts) < READ_PAGE:
            return found
        offset += READ_PAGE
    return found
