"""The connector's Calendly webhook subscription: install, list, remove, check and repair.

- ``install`` is idempotent: it lists the subscriptions first and adopts one with the same
  callback URL; if Calendly still answers 409 (a race, or a subscription in the other scope) it
  adopts the existing one. A new subscription gets a generated signing key, stored encrypted in
  ``signing_keys`` (the receiver reads the active ones: :mod:`.subscription_store`) and
  returned once so the operator can set ``CALENDLY_WEBHOOK_SIGNING_KEY`` on stateless receivers.
- Calendly disables a subscription after 24 h of failed deliveries and never re-enables it:
  ``check`` reports a ``disabled`` or missing subscription (and sets the
  ``webhook_subscription_active`` gauge); ``repair`` deletes and recreates it with the same
  signing key, so receivers configured with that key keep working.
- The installed subscription (uri, url, scope) is remembered in ``sync_state``
  (:mod:`~calendly_brevo.calendly.subscription_store`, with the signing keys), so ``check``
  knows what to look for without flags; ``check`` adds the ``state`` it saw and when
  (``checked_at``), which ``status`` shows.
- :class:`~calendly_brevo.calendly.subscription_probe.SubscriptionProbe` keeps the gauge
  current in the long-running processes (the CronJob's own gauge is never scraped): a live
  ``check`` every few minutes when Calendly credentials are configured, else the state the last
  ``check`` stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.calendly.subscription_store import (
    note_state,
    remember,
    remembered,
    retarget_keys,
    signing_key_for,
    store_signing_key,
)
from calendly_brevo.config import Settings
from calendly_brevo.crypto import SecretBox
from calendly_brevo.errors import CalendlyConflict, ConfigError
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
        remember(self.sessions, {"uri": sub["uri"], "url": url, "scope": scope})
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
        remember(
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
            retarget_keys(self.sessions, target, None)
        mine = remembered(self.sessions)
        if mine and mine.get("uri") in targets:
            remember(self.sessions, None)
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
            retarget_keys(self.sessions, str(old_uri), created["uri"])
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


def manager_for(
    settings: Settings,
    client: CalendlyClient,
    sessions: sessionmaker[Session],
    events: tuple[str, ...] | None = None,
) -> SubscriptionManager:
    """The manager of this deployment's subscription: its organization, the configured events
    (routing-form submissions when they are upserted), keys sealed with the settings' box."""
    from calendly_brevo.encryption_key import load_box

    return SubscriptionManager(
        client,
        sessions,
        load_box(settings),
        organization=settings.calendly.organization_uri,
        events=events or subscribed_events(settings.brevo.upsert_routing_form_submitters),
    )
