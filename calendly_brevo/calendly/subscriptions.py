"""The connector's Calendly webhook subscription: install, list, remove, check and repair.

- ``install`` is idempotent: it lists the subscriptions first and adopts one with the same
  callback URL; if Calendly still answers 409 (a race, or a subscription in the other scope) it
  adopts the existing one. A new subscription gets a generated signing key, stored encrypted in
  ``signing_keys`` (the receiver reads the active ones, see :func:`active_signing_keys`) and
  returned once so the operator can set ``CALENDLY_WEBHOOK_SIGNING_KEY`` on stateless receivers.
- Calendly disables a subscription after 24 h of failed deliveries and never re-enables it:
  ``check`` reports a ``disabled`` or missing subscription (and sets the
  ``webhook_subscription_active`` gauge); ``repair`` deletes and recreates it with the same
  signing key, so receivers configured with that key keep working.
- The installed subscription (uri, url, scope) is remembered in ``sync_state`` under
  :data:`STATE_NAME`, so ``check`` knows what to look for without flags; ``check`` adds the
  ``state`` it saw and when (``checked_at``), which ``status`` shows.
- :class:`SubscriptionProbe` keeps the gauge current in the long-running processes (the
  CronJob's own gauge is never scraped): a live ``check`` every few minutes when Calendly
  credentials are configured, else the state the last ``check`` stored.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.config import Settings
from calendly_brevo.crypto import SecretBox, generate_key
from calendly_brevo.db.models import SigningKey, SyncState
from calendly_brevo.errors import CalendlyConflict, ConfigError, ConnectorError
from calendly_brevo.logs import get_logger
from calendly_brevo.metrics import WEBHOOK_SUBSCRIPTION_ACTIVE

WEBHOOK_EVENTS = (
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
)
#: Calendly's own rule: routing-form submissions can only be subscribed at organization scope.
ROUTING_FORM_EVENT = "routing_form_submission.created"
SUBSCRIBABLE = (*WEBHOOK_EVENTS, ROUTING_FORM_EVENT)
WEBHOOK_PATH = "/webhooks/calendly"
STATE_NAME = "calendly.webhook_subscription"
SCOPES = ("organization", "user")


def default_callback_url(public_url: str | None) -> str | None:
    return public_url.rstrip("/") + WEBHOOK_PATH if public_url else None


@dataclass(frozen=True)
class InstallResult:
    subscription: dict[str, Any]
    #: The new signing key, shown once; None when an existing subscription was adopted.
    signing_key: str | None
    created: bool

    def __repr__(self) -> str:
        return f"InstallResult(uri={self.subscription.get('uri')!r}, created={self.created})"


@dataclass(frozen=True)
class Health:
    healthy: bool
    state: str  # active | disabled | missing
    url: str
    subscription: dict[str, Any] | None
    repaired: bool = False
    message: str = ""
    #: Set only when a repair had to generate a new key (shown once).
    signing_key: str | None = None

    def __repr__(self) -> str:
        return f"Health(state={self.state!r}, url={self.url!r}, repaired={self.repaired})"


# --- signing keys in the database ---------------------------------------------------------------
def store_signing_key(
    sessions: sessionmaker[Session], box: SecretBox, key: str, subscription_uri: str
) -> None:
    with sessions.begin() as session:
        session.add(
            SigningKey(
                key=box.encrypt(key),
                subscription_uri=subscription_uri,
                active=True,
                created_at=datetime.now(UTC),
            )
        )


def signing_key_for(
    sessions: sessionmaker[Session], box: SecretBox, subscription_uri: str
) -> str | None:
    with sessions() as session:
        row = session.scalars(
            select(SigningKey)
            .where(SigningKey.subscription_uri == subscription_uri, SigningKey.active.is_(True))
            .order_by(SigningKey.id.desc())
        ).first()
        return box.decrypt(row.key) if row else None


def active_signing_keys(sessions: sessionmaker[Session], box: SecretBox) -> list[str]:
    """Every active signing key stored by ``webhooks install`` (newest first)."""
    with sessions() as session:
        rows = session.scalars(
            select(SigningKey).where(SigningKey.active.is_(True)).order_by(SigningKey.id.desc())
        ).all()
        return list(dict.fromkeys(box.decrypt(r.key) for r in rows))


def _retarget_keys(sessions: sessionmaker[Session], old_uri: str, new_uri: str | None) -> None:
    """Point the keys of ``old_uri`` at ``new_uri`` (or deactivate them when None)."""
    with sessions.begin() as session:
        for row in session.scalars(
            select(SigningKey).where(SigningKey.subscription_uri == old_uri)
        ):
            if new_uri is None:
                row.active = False
            else:
                row.subscription_uri = new_uri


def _remember(sessions: sessionmaker[Session], value: dict[str, Any] | None) -> None:
    with sessions.begin() as session:
        row = session.get(SyncState, STATE_NAME)
        if value is None:
            if row is not None:
                session.delete(row)
            return
        if row is None:
            session.add(SyncState(name=STATE_NAME, value=value, updated_at=datetime.now(UTC)))
        else:
            row.value = value
            row.updated_at = datetime.now(UTC)


def remembered(sessions: sessionmaker[Session]) -> dict[str, Any] | None:
    with sessions() as session:
        row = session.get(SyncState, STATE_NAME)
        return dict(row.value) if row else None


def note_state(sessions: sessionmaker[Session], url: str, state: str, scope: str) -> None:
    """Store the state a check saw beside the remembered subscription (for status, gauges)."""
    mine = remembered(sessions) or {"url": url, "scope": scope}
    if mine.get("url") != url:  # a check of another URL: not our subscription
        return
    _remember(sessions, {**mine, "state": state, "checked_at": datetime.now(UTC).isoformat()})


def subscribed_events(
    routing_forms: bool, requested: str | None = None, scope: str = "organization"
) -> tuple[str, ...]:
    """The events to subscribe: ``requested`` (comma-separated) or the invitee and no-show
    events, plus routing-form submissions when the config upserts their submitters."""
    if requested is None:
        return (*WEBHOOK_EVENTS, ROUTING_FORM_EVENT) if routing_forms else WEBHOOK_EVENTS
    events = tuple(dict.fromkeys(e.strip() for e in requested.split(",") if e.strip()))
    unknown = [e for e in events if e not in SUBSCRIBABLE]
    if unknown or not events:
        raise ConfigError(
            "--events", f"unknown event {', '.join(unknown) or '(none)'}", ", ".join(SUBSCRIBABLE)
        )
    if ROUTING_FORM_EVENT in events and scope != "organization":
        raise ConfigError(
            "--events",
            f"Calendly accepts {ROUTING_FORM_EVENT} only at organization scope",
            "--scope organization, or leave it out of --events",
        )
    return events


def set_gauge(state: str, scope: str) -> None:
    WEBHOOK_SUBSCRIPTION_ACTIVE.labels(scope).set(1 if state == "active" else 0)


# --- the manager --------------------------------------------------------------------------------
class SubscriptionManager:
    def __init__(
        self,
        client: CalendlyClient,
        sessions: sessionmaker[Session],
        box: SecretBox,
        *,
        organization: str | None = None,
        events: tuple[str, ...] = WEBHOOK_EVENTS,
    ) -> None:
        self.events = events
        self.client = client
        self.sessions = sessions
        self.box = box
        self._organization = organization
        self._user: str | None = None

    def _whoami(self) -> tuple[str, str]:
        if self._user is None or self._organization is None:
            me = self.client.me()
            self._user = str(me["uri"])
            self._organization = self._organization or str(me["current_organization"])
        return self._organization, self._user

    @property
    def organization(self) -> str:
        return self._whoami()[0]

    def list_subscriptions(self, scopes: tuple[str, ...] = SCOPES) -> list[dict[str, Any]]:
        org, user = self._whoami()
        found: list[dict[str, Any]] = []
        for scope in scopes:
            found += self.client.list_webhook_subscriptions(
                organization=org, scope=scope, user=user if scope == "user" else None
            )
        return list({s["uri"]: s for s in found}.values())

    def find(self, url: str) -> dict[str, Any] | None:
        matches = [s for s in self.list_subscriptions() if s.get("callback_url") == url]
        matches.sort(key=lambda s: s.get("state") != "active")  # an active one first
        return matches[0] if matches else None

    def _create(self, url: str, scope: str, key: str) -> dict[str, Any]:
        org, user = self._whoami()
        sub = self.client.create_webhook_subscription(
            url,
            list(self.events),
            organization=org,
            scope=scope,
            user=user if scope == "user" else None,
            signing_key=key,
        )
        _remember(self.sessions, {"uri": sub["uri"], "url": url, "scope": scope})
        return sub

    def install(self, url: str, scope: str = "organization") -> InstallResult:
        if scope not in SCOPES:
            raise ConfigError("--scope", f"unknown scope {scope!r}", "organization or user")
        existing = self.find(url)
        if existing is not None and existing.get("state") == "disabled":
            health = self.repair(existing, url)
            assert health.subscription is not None
            return InstallResult(health.subscription, health.signing_key, created=True)
        if existing is None:
            key = secrets.token_urlsafe(32)
            try:
                sub = self._create(url, scope, key)
            except CalendlyConflict:
                existing = self.find(url)
                if existing is None:
                    raise
            else:
                store_signing_key(self.sessions, self.box, key, sub["uri"])
                return InstallResult(sub, key, created=True)
        _remember(
            self.sessions,
            {"uri": existing["uri"], "url": url, "scope": existing.get("scope", scope)},
        )
        return InstallResult(existing, None, created=False)

    def remove(self, *, url: str | None = None, uri: str | None = None) -> list[str]:
        """Delete the subscriptions with this callback URL or URI; returns the removed URIs."""
        targets = [
            s["uri"]
            for s in self.list_subscriptions()
            if (url is not None and s.get("callback_url") == url)
            or (uri is not None and s["uri"] == uri)
        ]
        for target in targets:
            self.client.delete_webhook_subscription(target)
            _retarget_keys(self.sessions, target, None)
        mine = remembered(self.sessions)
        if mine and mine.get("uri") in targets:
            _remember(self.sessions, None)
        return targets

    def expected_url(self, url: str | None) -> str | None:
        if url:
            return url
        mine = remembered(self.sessions)
        return str(mine["url"]) if mine else None

    def check(self, url: str | None = None, *, repair: bool = False) -> Health:
        target = self.expected_url(url)
        if target is None:
            raise ConfigError(
                "--url",
                "no webhook URL known (nothing installed from here)",
                "pass --url https://…/webhooks/calendly or set PUBLIC_URL",
            )
        sub = self.find(target)
        state = "missing" if sub is None else str(sub.get("state", "active"))
        scope = str((sub or {}).get("scope") or (remembered(self.sessions) or {}).get("scope"))
        scope = scope if scope in SCOPES else "organization"
        note_state(self.sessions, target, state, scope)
        set_gauge(state, scope)
        if state == "active":
            return Health(True, state, target, sub, message="subscription is active")
        if not repair:
            why = (
                "Calendly disabled it after 24 h of failed deliveries and never re-enables it"
                if state == "disabled"
                else "no subscription for this URL"
            )
            return Health(False, state, target, sub, message=f"{why}: run webhooks check --repair")
        return self.repair(sub, target)

    def repair(self, sub: dict[str, Any] | None, url: str) -> Health:
        """Delete ``sub`` (if any) and recreate it with the same scope and signing key."""
        mine = remembered(self.sessions) or {}
        scope = str((sub or {}).get("scope") or mine.get("scope") or "organization")
        key = signing_key_for(self.sessions, self.box, sub["uri"]) if sub else None
        if key is None and mine.get("uri"):
            key = signing_key_for(self.sessions, self.box, str(mine["uri"]))
        new_key = key is None
        key = key or secrets.token_urlsafe(32)
        if sub is not None:
            self.client.delete_webhook_subscription(sub["uri"])
        created = self._create(url, scope, key)
        old_uri = sub["uri"] if sub else mine.get("uri")
        if new_key:
            store_signing_key(self.sessions, self.box, key, created["uri"])
        elif old_uri:
            _retarget_keys(self.sessions, str(old_uri), created["uri"])
        note_state(self.sessions, url, "active", scope)
        set_gauge("active", scope)
        note = " with a NEW signing key: update CALENDLY_WEBHOOK_SIGNING_KEY" if new_key else ""
        return Health(
            True,
            "active",
            url,
            created,
            repaired=True,
            message=f"recreated{note}",
            signing_key=key if new_key else None,
        )


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


def manager_for(
    settings: Settings,
    client: CalendlyClient,
    sessions: sessionmaker[Session],
    events: tuple[str, ...] | None = None,
) -> SubscriptionManager:
    """The manager of this deployment's subscription: its organization, the configured events
    (routing-form submissions when they are upserted), keys sealed with the settings' box."""
    from calendly_brevo.crypto import load_box

    return SubscriptionManager(
        client,
        sessions,
        load_box(settings),
        organization=settings.calendly.organization_uri,
        events=events or subscribed_events(settings.brevo.upsert_routing_form_submitters),
    )
