"""Reads shared between imports in flight at once (the worker's, with
``brevo.batch.live_imports``): what a read-back of one client returned is kept for a few seconds
(:class:`RecentReads`), and an import looks there first, at the reads that started after Brevo
took it, before it spends a request of the contacts family on a read of its own
(:mod:`~calendly_brevo.brevo.readback`). Such a read shows the import's rows as well as one of
its own made at that moment would (Brevo lists a contact modified by the import in every read
after it applied it), so nothing is taken as seen that its own read would not.

A read still waiting for its token (:meth:`RecentReads.wait_for_read`) is one such read to
come: its token lets it go after the import that finds it waiting, so that import waits for it
rather than queueing a read of its own behind it. When the contacts family is busy, imports would
otherwise each spend a token on a read of their own, a read per import.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from calendly_brevo.brevo.client import BrevoClient

#: Seconds a read's contacts are kept for other imports' confirmations.
SHARED_FOR = 10.0


@dataclass(frozen=True)
class _Read:
    started: float  # time.monotonic() when its token let its first page go
    contacts: tuple[dict[str, Any], ...]


@dataclass(eq=False)
class _Waiting:
    """A read waiting for its token: its ``modifiedSince``, and set once it is done."""

    since: datetime
    granted: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class RecentReads:
    """The last :data:`SHARED_FOR` seconds of one client's read-back pages, and the reads
    waiting for their token (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: list[_Read] = []
        self._waiting: list[_Waiting] = []

    @contextmanager
    def reading(self, since: datetime) -> Iterator[Callable[[], None]]:
        """Around one read of the contacts changed since ``since``: until it calls the
        ``granted`` it yields (its token let it go), imports may wait for it
        (:meth:`wait_for_read`); once it ends, they look at what it noted."""
        mine = _Waiting(since)
        with self._lock:
            self._waiting.append(mine)

        def granted() -> None:
            mine.granted = True

        try:
            yield granted
        finally:
            with self._lock:
                self._waiting.remove(mine)
            mine.done.set()

    def wait_for_read(self, since: datetime, timeout: float) -> bool:
        """Wait for a read that is still waiting for its token and lists at least the contacts
        changed since ``since`` (its own ``since`` is no later); whether there was one."""
        with self._lock:
            ahead = next((w for w in self._waiting if not w.granted and w.since <= since), None)
        if ahead is None:
            return False
        ahead.done.wait(max(timeout, 0.0))
        return True

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
