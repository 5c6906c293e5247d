"""Who may start the Calendly OAuth flow, and which account it may connect.

Starting a connection needs the admin bearer token (``/oauth/calendly/start`` on the admin
port) or a one-time connect link printed by ``calendly-brevo oauth connect-url``. Either way the
browser ends up at a one-time link on the public callback (``…/oauth/calendly/callback?link=``):
a random nonce whose SHA-256 is stored in ``oauth_connect_links`` with an expiry
(:data:`LINK_TTL` for printed links, a short one for the admin start's redirect); the first
request that presents it marks it used (an atomic ``UPDATE … WHERE used_at IS NULL``), so it
works once, on any replica, and sets the cookie that binds the flow to that browser.

The callback then refuses a token for another Calendly account than the one connected
(:func:`same_account`) unless the link (or the admin's ``?replace=1``) asked to replace it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly.tokens import StoredToken
from calendly_brevo.db.models import OAuthConnectLink

#: A connect link is good for 15 minutes, once.
LINK_TTL = 900


def _hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8", "replace")).hexdigest()


def issue_link(
    sessions: sessionmaker[Session],
    callback_url: str,
    *,
    replace: bool = False,
    ttl: float = LINK_TTL,
    now: datetime | None = None,
) -> str:
    """Store a new one-time link and return its URL: ``callback_url`` (the OAuth callback on
    the public URL) with ``?link=<nonce>``."""
    created = now or datetime.now(UTC)
    nonce = secrets.token_urlsafe(32)
    with sessions.begin() as session:
        session.add(
            OAuthConnectLink(
                nonce_hash=_hash(nonce),
                replace=replace,
                created_at=created,
                expires_at=created + timedelta(seconds=ttl),
            )
        )
    return f"{callback_url}?{urlencode({'link': nonce})}"


def consume_link(
    sessions: sessionmaker[Session], nonce: str, *, now: datetime | None = None
) -> bool | None:
    """Use a link once: its ``replace`` flag, or None if unknown, expired or already used."""
    moment = now or datetime.now(UTC)
    key = _hash(nonce)
    with sessions.begin() as session:
        used = session.execute(
            update(OAuthConnectLink)
            .where(
                OAuthConnectLink.nonce_hash == key,
                OAuthConnectLink.used_at.is_(None),
                OAuthConnectLink.expires_at > moment,
            )
            .values(used_at=moment)
            .execution_options(synchronize_session=False)
        )
        if getattr(used, "rowcount", 0) != 1:
            return None
        row = session.get(OAuthConnectLink, key)
        return bool(row.replace) if row is not None else None


def same_account(current: StoredToken | None, response: Mapping[str, Any]) -> bool:
    """Whether a token response is for the connected account (or nothing is connected yet).

    Both the organization and the user must match: a user-scoped connection acts as its user,
    and an organization-scoped one must never move to another organization."""
    if current is None:
        return True
    org, owner = response.get("organization"), response.get("owner")
    if current.organization_uri and org != current.organization_uri:
        return False
    return not (current.owner_uri and owner != current.owner_uri)
