"""What the database keeps of the webhook subscription: its signing keys (encrypted, in
``signing_keys``; the receiver reads the active ones) and the remembered subscription (uri, url,
scope, and the state the last check saw) in ``sync_state`` under :data:`STATE_NAME`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.crypto import SecretBox
from calendly_brevo.db.models import SigningKey, SyncState

STATE_NAME = "calendly.webhook_subscription"


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


def retarget_keys(sessions: sessionmaker[Session], old_uri: str, new_uri: str | None) -> None:
    """Point the keys of ``old_uri`` at ``new_uri`` (or deactivate them when None)."""
    with sessions.begin() as session:
        for row in session.scalars(
            select(SigningKey).where(SigningKey.subscription_uri == old_uri)
        ):
            if new_uri is None:
                row.active = False
            else:
                row.subscription_uri = new_uri


def remember(sessions: sessionmaker[Session], value: dict[str, Any] | None) -> None:
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
    remember(sessions, {**mine, "state": state, "checked_at": datetime.now(UTC).isoformat()})
