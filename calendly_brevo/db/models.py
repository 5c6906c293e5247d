"""The schema. Alembic migrations in ``migrations/`` are the one way it changes.

- ``processed_events``: one row per logical event (its id is a stable hash, see
  :func:`calendly_brevo.events.event_id`). ``status`` goes ``processing`` → ``applied`` /
  ``ignored`` / ``dead``; ``effects`` records which Brevo effects already happened so a retry
  after a partial success never sends a custom event twice. ``signature_key`` labels the
  webhook signing key that verified it (never the key), ``brevo_calls`` logs the Brevo calls
  made for it (method, route template, status, duration: no email), both for ``trace``.
- ``invitees``: the state of every invitee ever seen, the input of the contact projection.
- ``no_shows``: each no-show mark seen (created and/or deleted), so marks converge in any order.
- ``dead_letters``: events that failed permanently or ran out of retries, with the cause.
- ``tombstones``: hashes of forgotten people's emails and invitee URIs (no PII), so their past
  events are recognised and do not re-create them.
- ``pushed_projections``: per contact, what the connector last pushed to Brevo.
- ``sync_state``: small named JSON values (backfill cursors, the webhook subscription).
- ``oauth_tokens`` / ``signing_keys``: secrets, stored encrypted (Fernet), never in clear.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class ProcessedEvent(Base):
    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_name: Mapped[str] = mapped_column(String(64))
    invitee_uri: Mapped[str | None] = mapped_column(String(512))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    effects: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    payload: Mapped[str | None] = mapped_column(Text)
    #: The label of the key that verified the webhook (calendly_brevo.key_labels.key_label).
    signature_key: Mapped[str | None] = mapped_column(String(64))
    #: The Brevo calls of every attempt, oldest first (calendly_brevo.brevo_calls).
    brevo_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    received_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Invitee(Base):
    __tablename__ = "invitees"

    invitee_uri: Mapped[str] = mapped_column(String(512), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    status: Mapped[str] = mapped_column(String(16))
    #: The invitee record as the mapping sees it (plain JSON, see calendly_brevo.state).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]


class NoShow(Base):
    __tablename__ = "no_shows"

    #: ``<invitee uri>#<no-show uri>``; the no-show URI is empty for a deletion that named none.
    mark_key: Mapped[str] = mapped_column(String(1100), primary_key=True)
    no_show_uri: Mapped[str | None] = mapped_column(String(512))
    invitee_uri: Mapped[str] = mapped_column(String(512), index=True)
    created: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    marked_at: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime]


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_open", "replayed_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(String(64), index=True)
    event_name: Mapped[str | None] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    received_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(index=True)
    replayed_at: Mapped[datetime | None]


class Tombstone(Base):
    __tablename__ = "tombstones"

    #: ``sha256("email:<email>")`` or ``sha256("invitee:<uri>")``.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class PushedProjectionRow(Base):
    __tablename__ = "pushed_projections"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The list ids the connector manages for this contact (a JSON array).
    list_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    projection_hash: Mapped[str] = mapped_column(String(64))
    mapping_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    pushed_at: Mapped[datetime]
    event_id: Mapped[str | None] = mapped_column(String(64))


class SyncState(Base):
    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]


class OAuthToken(Base):
    __tablename__ = "oauth_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[bytes] = mapped_column(LargeBinary)
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None]
    scope: Mapped[str | None] = mapped_column(Text)
    owner_uri: Mapped[str | None] = mapped_column(String(512))
    organization_uri: Mapped[str | None] = mapped_column(String(512))
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]


class SigningKey(Base):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[bytes] = mapped_column(LargeBinary)
    subscription_uri: Mapped[str | None] = mapped_column(String(512))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class OAuthConnectLink(Base):
    """A one-time OAuth connect link (``calendly-brevo oauth connect-url``): only the SHA-256 of
    its nonce is stored; ``used_at`` is set by the one request that consumes it."""

    __tablename__ = "oauth_connect_links"

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    replace: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
