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
so nothing rests on the import alone: the cost of a miss is one single call. Rows Brevo skipped
do not hold the others for the whole ``confirm_seconds``: once an import shows some of its
rows and further reads bring no more (:mod:`~calendly_brevo.brevo.readback`), its rows not
seen are given up.

``modifiedSince`` is Brevo's clock against this machine's: the read starts
:data:`CLOCK_MARGIN` earlier, and a contact Brevo did not change (it already held the row's
values) is not listed, which again only costs its single upsert.

Only contacts with lists fit an import (rows are grouped by their lists: one request per
group); :func:`importable` says which. An import cannot unlink: a row with lists to leave is
confirmed only when the read shows Brevo *created* the contact with the import (on no other
list then); a contact Brevo held before is left to the single upsert, which unlinks.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from calendly_brevo.brevo.bulk import ContactUpdate
from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.brevo.readback import ReadBack
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError
from calendly_brevo.metrics import BREVO_BATCH_ITEMS, BREVO_BATCHES

IMPORT_ROUTE = "/contacts/import"
#: How far Brevo's clock may run behind this machine's without a contact being missed.
CLOCK_MARGIN = timedelta(seconds=5)
#: Fewer new contacts than this are created one by one (an import and its read are 2 calls).
IMPORT_MIN = 3


def importable(update: ContactUpdate) -> bool:
    """Whether an import can carry ``update`` (it sets lists)."""
    return bool(update.list_ids)


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
    clock_margin: timedelta = CLOCK_MARGIN,
) -> Imported:
    """Import ``updates`` (each :func:`importable`) and read them back (see the module)."""
    back = ReadBack(client, datetime.now(UTC) - clock_margin)
    groups: dict[tuple[int, ...], list[ContactUpdate]] = defaultdict(list)
    for update in updates:
        groups[tuple(sorted(update.list_ids))].append(update)
    for lists, group in groups.items():
        if _send(client, lists, group):
            back.imports.append({u.email.lower(): set(lists) for u in group})
            back.taken = time.monotonic()
    back.confirm(time.monotonic() + confirm_seconds, sleep)
    confirmed = [
        u.email.lower() in back.seen and (not u.unlink_list_ids or u.email.lower() in back.created)
        for u in updates
    ]
    BREVO_BATCHES.labels("import", "confirmed").inc(sum(confirmed))
    BREVO_BATCHES.labels("import", "unconfirmed").inc(len(updates) - sum(confirmed))
    return Imported(confirmed, len(groups) + back.reads)


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
        if client.call("POST", IMPORT_ROUTE, json=body) is None:
            return False  # dry run: the single upserts log what they would do
    except (BrevoPermanentError, BrevoTransientError):
        BREVO_BATCHES.labels("import", "failed").inc()
        return False
    BREVO_BATCHES.labels("import", "accepted").inc()
    return True
