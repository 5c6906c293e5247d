"""The Brevo calls made for one event, kept with it for ``calendly-brevo trace``.

The pipeline opens a :class:`CallLog` for each attempt at an event (:func:`recording`, a
context variable: one per worker thread); the Brevo client reports every request it makes to
:func:`note`, which does nothing when no log is open (a CLI command, ``resync``). The ledger
stores :func:`stored` with the event's writes, so the calls of a failed attempt are kept too.

One call is ``{"attempt", "at", "method", "route", "status", "ms"}``:

- ``route`` is the template the client was given (``/contacts/{identifier}``), never the path
  with an email in it, and no request body: nothing here is PII;
- ``status`` is the HTTP status as text, ``error`` when no answer came (timeout, network), or
  ``dry_run`` when the client sent nothing;
- ``ms`` is how long the request took (``0`` in a dry run), ``at`` when it was made (UTC).

Only the newest :data:`MAX_CALLS` calls of an event are kept: an event that waited out an hour
of rate limiting would otherwise carry hundreds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_CALLS = 50


@dataclass
class CallLog:
    """This attempt's calls, after those the earlier attempts stored."""

    attempt: int
    previous: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def stored(self) -> list[dict[str, Any]] | None:
        """What the event's row should hold now; ``None``: this attempt made no call yet."""
        if not self.calls:
            return None
        return (self.previous + self.calls)[-MAX_CALLS:]


_CURRENT: ContextVar[CallLog | None] = ContextVar("calendly_brevo_brevo_calls", default=None)


@contextmanager
def recording(attempt: int, previous: list[dict[str, Any]] | None = None) -> Iterator[CallLog]:
    """Collect the Brevo calls made in this block (one attempt at one event)."""
    with using(CallLog(attempt, list(previous or ()))) as log:
        yield log


@contextmanager
def using(log: CallLog) -> Iterator[CallLog]:
    """Make ``log`` this thread's open log for the block (a group's leader, working through
    the calls of several events in turn: :mod:`worker.group`)."""
    token = _CURRENT.set(log)
    try:
        yield log
    finally:
        _CURRENT.reset(token)


def note(method: str, route: str, status: int | str, started: float | None = None) -> None:
    """Record one request (``started``: its ``time.perf_counter()``; ``None``: not sent)."""
    log = _CURRENT.get()
    if log is None:
        return
    ms = 0.0 if started is None else round((time.perf_counter() - started) * 1000, 1)
    log.calls.append(
        {
            "attempt": log.attempt,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": method,
            "route": route,
            "status": str(status),
            "ms": ms,
        }
    )


def stored() -> list[dict[str, Any]] | None:
    """The open log's :meth:`CallLog.stored` (``None`` outside :func:`recording`)."""
    log = _CURRENT.get()
    return log.stored() if log is not None else None


@contextmanager
def made_during(into: list[dict[str, Any]]) -> Iterator[None]:
    """Copy into ``into`` the calls noted in this thread's log inside the block (the requests a
    batch's sender made, to be shared with the calls it carried: :func:`adopt`)."""
    log = _CURRENT.get()
    start = len(log.calls) if log is not None else 0
    try:
        yield
    finally:
        if log is not None:
            into.extend(dict(call) for call in log.calls[start:])


def adopt(calls: list[dict[str, Any]]) -> None:
    """Add requests another thread made for this attempt's call (a coalesced batch that carried
    it) to this thread's log, as this attempt's."""
    log = _CURRENT.get()
    if log is None:
        return
    log.calls.extend({**call, "attempt": log.attempt} for call in calls)
