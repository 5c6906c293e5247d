"""The Calendly side: API client, OAuth, webhook subscriptions, backfill and reconcile.

:func:`make_client` is the one place that decides how we authenticate: a Personal Access Token
(``CALENDLY_ACCESS_TOKEN``) when set, else the OAuth token stored by the ``/oauth/calendly``
flow. A PAT needs no OAuth set-up at all.
"""

from __future__ import annotations

import httpx
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly.client import (
    CalendlyClient,
    Page,
    StaticToken,
    TokenProvider,
    describe_error,
    uuid_of,
)
from calendly_brevo.config import Settings
from calendly_brevo.errors import ConfigError

__all__ = [
    "CalendlyClient",
    "Page",
    "StaticToken",
    "TokenProvider",
    "describe_error",
    "make_client",
    "make_token_provider",
    "uuid_of",
]

NO_AUTH_FIX = (
    "set CALENDLY_ACCESS_TOKEN to a Personal Access Token from "
    "https://calendly.com/integrations/api_webhooks, or configure OAuth (CALENDLY_CLIENT_ID, "
    "CALENDLY_CLIENT_SECRET) and connect at /oauth/calendly/start"
)


def make_token_provider(
    settings: Settings, http: httpx.Client, sessions: sessionmaker[Session] | None = None
) -> TokenProvider:
    pat = settings.calendly.access_token
    if pat is not None and pat.get_secret_value():
        settings.require("connectors.calendly.access_token")
        return StaticToken(pat.get_secret_value())
    if settings.calendly.oauth.client_id and sessions is not None:
        from calendly_brevo.calendly.tokens import OAuthTokenProvider, OAuthTokenStore
        from calendly_brevo.encryption_key import load_box

        store = OAuthTokenStore(sessions, load_box(settings))
        return OAuthTokenProvider(store, http, settings.calendly.oauth)
    raise ConfigError("connectors.calendly.access_token", "no Calendly credentials", NO_AUTH_FIX)


def make_client(
    settings: Settings,
    http: httpx.Client,
    sessions: sessionmaker[Session] | None = None,
) -> CalendlyClient:
    """A client for these settings, authenticated with the PAT or the stored OAuth token."""
    return CalendlyClient(
        http,
        make_token_provider(settings, http, sessions),
        base_url=settings.calendly.api_url,
    )
