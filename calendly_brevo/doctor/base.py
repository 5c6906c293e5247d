"""What every doctor check shares: its result (:class:`Check`) and what it may look at
(:class:`DoctorContext`: the settings, an HTTP client, the database and Redis, lazily)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly import CalendlyClient, make_client
from calendly_brevo.config import Settings
from calendly_brevo.errors import ConnectorError

Status = Literal["OK", "WARN", "FAIL"]
IP_FIX = (
    "Brevo blocks unknown IP addresses: allow this machine's egress IP at "
    "https://app.brevo.com/security/authorised-ips (or turn IP blocking off)"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass
class DoctorContext:
    settings: Settings
    http: httpx.Client
    engine_factory: Callable[[], Engine]
    sessions_factory: Callable[[], sessionmaker[Session]]
    redis_ping: Callable[[], bool] | None = None
    #: The Redis client, for the dead-worker check (``None``: embedded, or not reachable).
    redis_client: Callable[[], Any] | None = None
    #: How the Brevo checks wait between retries of a transient answer (tests pass their own).
    sleep: Callable[[float], None] = time.sleep
    _cache: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def calendly(self) -> CalendlyClient:
        try:
            sessions = self.sessions_factory()
        except (SQLAlchemyError, ConnectorError):
            sessions = None
        return make_client(self.settings, self.http, sessions)

    def brevo_get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """``GET`` a Brevo path, waiting out 5xx, 429 and timeouts for
        ``brevo.startup_wait_seconds``; past that, the last answer (or error) is the result."""
        from calendly_brevo.brevo.patience import (
            raise_if_transient,
            transport_errors_as_transient,
            wait_out,
        )
        from calendly_brevo.errors import TransientError

        key = self.settings.brevo.api_key
        what = f"Brevo GET /{path.lstrip('/')}"
        last: list[httpx.Response] = []

        def once() -> httpx.Response:
            last.clear()
            response = transport_errors_as_transient(
                lambda: self.http.get(
                    f"{self.settings.brevo.api_url.rstrip('/')}/{path.lstrip('/')}",
                    params=params,
                    headers={
                        "api-key": key.get_secret_value() if key else "",
                        "accept": "application/json",
                    },
                ),
                what,
            )
            last[:] = [response]
            return raise_if_transient(response, what)

        try:
            return wait_out(
                once,
                what=what,
                budget_seconds=self.settings.brevo.startup_wait_seconds,
                sleep=self.sleep,
            )
        except TransientError as exc:
            if last:
                return last[0]
            if isinstance(exc.__cause__, httpx.HTTPError):
                raise exc.__cause__ from None  # the checks report transport errors themselves
            raise
