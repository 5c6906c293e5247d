"""Replay dead letters: the one function ``dlq replay`` and the console's replay button call.

A replay re-enqueues the stored raw event exactly as a webhook would have, with source
``replay``. It takes the normal pipeline, dedup included: an event whose effects partly happened
before it failed keeps its ``effects`` record, so its custom event is not sent a second time.
"""

from __future__ import annotations

import time

from calendly_brevo.ledger import DeadLetterFilter, Ledger
from calendly_brevo.queueing import Enqueuer

#: The ``source`` of a dead letter written by ``resync`` (see :mod:`calendly_brevo.resync`).
RESYNC_SOURCE = "resync"


def replay(ledger: Ledger, enqueuer: Enqueuer, f: DeadLetterFilter) -> list[int]:
    """Re-enqueue matching dead letters; mark each replayed only after its enqueue succeeded.
    One whose payload retention removed (``prune``) has nothing to replay and is skipped, as is
    a failed ``resync`` push (re-run ``resync``)."""
    replayed: list[int] = []
    for row in ledger.dead_letters(f, limit=None):
        if not row.payload or row.source == RESYNC_SOURCE:
            # A failed resync push is not an event: `calendly-brevo resync` retries it and
            # marks it replayed once the contact is pushed.
            continue
        enqueuer.enqueue(row.payload, received_at=time.time(), source="replay")
        ledger.mark_replayed(row.id)
        replayed.append(row.id)
    return replayed
