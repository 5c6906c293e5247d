"""Reads shared between imports in flight at once (the worker's, with
``brevo.batch.live_imports``): what a read-back of one client returned is kept for a few seconds
(:class:`RecentReads`), and an import looks there first, at the reads that started after Brevo
took it, before it spends a request of the contacts family on a read of its own
(:mod:`~calendly_brevo.brevo.readback`). Such a read shows the import's rows as well as one of
its own made at that moment would (Brevo lists a contact modified by the import in every read
after it applied it), so nothing is taken as seen that its own read would not.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from calendly_brevo.brevo.client import BrevoClient

#: Seconds a read's contacts are kept for other imports' confirmations.
SHARED_FOR = 10.0


@dataclass(frozen=True)
class _Read:
    started: float  # time.monotonic() when its token let its first page go
    contacts: tuple[dict[str, Any], ...]


class RecentReads:
    """The last :data:`SHARED_FOR` seconds of one client's read-back pages (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: list[_Read] = []

    def note(self, started: float, contacts: list[dict[str, Any]]) -> None:
        with self._lock:
            cutoff = time.monotonic() - SHARED_FOR
            self._reads = [r for r in self._reads if r.started >= cutoff]
            self._reads.append(_Read(started, tuple(contacts)))

    def after(self, moment: float) -> list[dict[str, Any]]:
        """The contacts of the reads that started after ``moment``."""
        with self._lock:
            return [c for r in self._reads if r.started > moment for c in r.contacts]


_SHARED: weakref.WeakKeyDictionary[BrevoClient, RecentReads] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def recent_reads(client: BrevoClient) -> RecentReads:
    """The reads shared by every import of ``client`` (one Brevo account) in this process."""
    with _SHARED_LOCK:
        shared = _SHARED.get(client)
        if shared is None:
            shared = _SHARED[client] = RecentReads()
        return shared
