"""Keep the ``webhook_subscription_active`` gauge current in the long-running processes (the
CronJob's own gauge is never scraped)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly.subscription_store import remembered
from calendly_brevo.calendly.subscriptions import (
    SCOPES,
    Health,
    SubscriptionManager,
    default_callback_url,
    set_gauge,
)
from calendly_brevo.config import Settings
from calendly_brevo.crypto import SecretBox, generate_key
from calendly_brevo.errors import ConnectorError
from calendly_brevo.logs import get_logger


class SubscriptionProbe:
    """Keep ``webhook_subscription_active`` current from a long-running process's gauge loop.

    :meth:`refresh` is cheap to call often: it asks Calendly (``check`` without repair: one
    ``/users/me`` and one or two list calls) at most every ``interval`` seconds, and only when
    Calendly credentials are configured and a callback URL is known (remembered by ``webhooks
    install``, or ``PUBLIC_URL``). Otherwise, or when Calendly cannot be reached, it reads the
    state the last ``webhooks check`` stored, every ``stored_interval`` seconds. The gauge stays
    absent while the state is unknown.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        interval: float = 300.0,
        stored_interval: float = 60.0,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.interval = interval
        self.stored_interval = stored_interval
        self._http = http
        self._clock = clock
        self._due = 0.0
        self.state: str | None = None
        self._log = get_logger("calendly_brevo.subscriptions")

    def _live(self) -> Health | None:
        from calendly_brevo.calendly import make_client

        cal = self.settings.calendly
        url = (remembered(self.sessions) or {}).get("url") or default_callback_url(
            self.settings.server.public_url
        )
        if not url or not self._can_ask():
            return None
        http = self._http or httpx.Client(timeout=15.0)
        try:
            client = make_client(self.settings, http, self.sessions)
            # check() without repair never decrypts: a throwaway box keeps the key file alone.
            box = SecretBox([generate_key()])
            manager = SubscriptionManager(
                client, self.sessions, box, organization=cal.organization_uri
            )
            return manager.check(str(url))
        except (ConnectorError, httpx.HTTPError) as exc:
            self._log.warning("subscription_check_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        finally:
            if self._http is None:
                http.close()

    def refresh(self) -> str | None:
        now = self._clock()
        if now < self._due:
            return self.state
        health = self._live()
        if health is not None:
            self.state = health.state
        else:
            mine = remembered(self.sessions) or {}
            if "state" in mine:
                self.state = str(mine["state"])
                scope = str(mine.get("scope"))
                set_gauge(self.state, scope if scope in SCOPES else "organization")
        self._due = now + (self.interval if self._can_ask() else self.stored_interval)
        return self.state

    def _can_ask(self) -> bool:
        cal = self.settings.calendly
        token = cal.access_token.get_secret_value() if cal.access_token else ""
        return bool(token or cal.oauth.client_id)
