"""Waiting out transient Brevo answers at start-up: ``brevo setup``, ``doctor``, the worker's
and ``run``'s set-up check.

A 502, a 429, a timeout or our own token bucket saying "not yet" says nothing about the
account, so these callers retry with exponential backoff (1 s, 2 s, 4 s … at most 15 s, or
the delay the error names) for ``brevo.startup_wait_seconds``, logging what they wait for.
A definite answer (a missing attribute, a 401) stops them at once: only
:class:`~calendly_brevo.errors.TransientError` is retried. When the budget is spent the last
transient error is raised and the caller decides (the worker starts anyway: events wait in the
queue and retry; the commands fail and say why).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

from calendly_brevo.errors import BrevoTransientError, TransientError
from calendly_brevo.logs import get_logger

T = TypeVar("T")
FIRST_DELAY = 1.0
MAX_DELAY = 15.0
#: Answers that say "try again later" rather than anything about the account.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def wait_out(
    call: Callable[[], T],
    *,
    what: str,
    budget_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()`` until it returns or raises anything but a :class:`TransientError`, or until
    ``budget_seconds`` have passed (then the last transient error propagates)."""
    log = get_logger("calendly_brevo.brevo")
    deadline = clock() + budget_seconds
    backoff = FIRST_DELAY
    attempt = 1
    while True:
        try:
            return call()
        except TransientError as exc:
            left = deadline - clock()
            delay = min(max(exc.delay or 0.0, backoff), MAX_DELAY)
            if left <= 0 or delay > left:
                log.warning("brevo_wait_gave_up", waiting_for=what, error=str(exc), tries=attempt)
                raise
            log.warning(
                "brevo_waiting",
                waiting_for=what,
                error=str(exc),
                attempt=attempt,
                retry_in=round(delay, 1),
                gives_up_in=round(left, 1),
            )
            sleep(delay)
            backoff = min(backoff * 2, MAX_DELAY)
            attempt += 1


def raise_if_transient(response: httpx.Response, what: str) -> httpx.Response:
    """For raw ``httpx`` callers (``doctor``): turn a transient status into an error
    :func:`wait_out` retries; any other answer is returned for the caller to judge."""
    if response.status_code in TRANSIENT_STATUSES:
        raise BrevoTransientError(
            f"{what}: HTTP {response.status_code}", status=response.status_code
        )
    return response


def transport_errors_as_transient(call: Callable[[], T], what: str) -> T:
    """``httpx`` timeouts and connection errors as :class:`BrevoTransientError`."""
    try:
        return call()
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise BrevoTransientError(f"{what}: {type(exc).__name__}") from exc
