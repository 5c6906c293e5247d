"""Failed admin authentication is rate-limited per client address.

After ``max_failures`` wrong or missing admin tokens from one address within ``window_seconds``,
that address gets 429 (with a reason and ``Retry-After``) until its oldest failure leaves the
window, even with the right token: guessing the token costs an attacker the whole window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

MAX_FAILURES = 10
WINDOW_SECONDS = 300.0


class AuthLimiter:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        horizon = self.clock() - self.window_seconds
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]  # the table holds only addresses failing right now
            return deque()
        return failures

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None if it may now."""
        failures = self._recent(address)
        if len(failures) < self.max_failures:
            return None
        return max(1.0, failures[0] + self.window_seconds - self.clock())

    def failed(self, address: str) -> None:
        self._recent(address)
        self._failures.setdefault(address, deque()).append(self.clock())


AUTH_LIMITER = web.AppKey("admin_auth_limiter", AuthLimiter)


def limiter_for(app: web.Application) -> AuthLimiter:
    if AUTH_LIMITER not in app:
        app[AUTH_LIMITER] = AuthLimiter()
    return app[AUTH_LIMITER]


def too_many(retry_after: float) -> web.Response:
    return web.json_response(
        {
            "error": "too many failed admin authentications from this address; "
            f"try again in {int(retry_after)}s",
            "reason": "auth_rate_limited",
        },
        status=429,
        headers={"Retry-After": str(int(retry_after))},
    )
