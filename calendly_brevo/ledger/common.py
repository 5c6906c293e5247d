"""What the Postgres and SQLite ledgers share: the ORM paths off the hot path.

Reading a contact's invitee state, event rows, tombstones and pushed projections, written once
through SQLAlchemy's ORM for both databases. Nothing here branches on the dialect: row locks
(``with_for_update``) are Postgres's and SQLite ignores them (its writes are serialised by the
database lock anyway). Dead letters are in :mod:`.common_deadletters`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, union
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.db.engine import make_sessionmaker
from calendly_brevo.db.models import (
    Invitee,
    NoShow,
    ProcessedEvent,
    PushedProjectionRow,
    Tombstone,
)
from calendly_brevo.ledger.base import (
    SETTLED,
    UNSENT_STATUSES,
    EventRow,
    PushedProjection,
    aware,
    now,
    tombstone_key,
    tombstone_keys,
)
from calendly_brevo.ledger.common_deadletters import SqlDeadLetters
from calendly_brevo.state import InviteeRecord, NoShowMark


def mark_of(row: Any) -> NoShowMark:
    return NoShowMark(
        no_show_uri=row.no_show_uri,
        invitee_uri=row.invitee_uri,
        created=row.created,
        deleted=row.deleted,
        marked_at=row.marked_at,
    )


def contact_state(s: Session, email: str) -> tuple[list[InviteeRecord], list[NoShowMark]]:
    rows = s.scalars(select(Invitee).where(Invitee.email == email)).all()
    records = [InviteeRecord.from_dict(r.data) for r in rows]
    uris = [r.invitee_uri for r in rows]
    if not uris:
        return records, []
    marks = s.scalars(select(NoShow).where(NoShow.invitee_uri.in_(uris))).all()
    return records, [mark_of(m) for m in marks]


def _pushed(row: PushedProjectionRow) -> PushedProjection:
    return pushed_from(
        row.email,
        row.attributes,
        row.list_ids,
        row.projection_hash,
        row.mapping_fingerprint,
        row.pushed_at,
        row.event_id,
    )


def pushed_from(
    email: str,
    attributes: dict[str, Any] | None,
    list_ids: list[int] | None,
    projection_hash: str,
    mapping_fingerprint: str,
    pushed_at: datetime,
    event_id: str | None,
) -> PushedProjection:
    """A ``pushed_projections`` row's values, in column order (an ORM row's or a cursor's)."""
    return PushedProjection(
        email=email,
        attributes=dict(attributes or {}),
        list_ids=tuple(list_ids or ()),
        projection_hash=projection_hash,
        mapping_fingerprint=mapping_fingerprint,
        pushed_at=aware(pushed_at) or pushed_at,
        event_id=event_id,
    )


def _event_row(row: ProcessedEvent) -> EventRow:
    return EventRow(
        event_id=row.event_id,
        status=row.status,
        attempts=row.attempts,
        effects=dict(row.effects or {}),
        payload=row.payload,
        last_error=row.last_error,
        applied_at=aware(row.applied_at),
        event_name=row.event_name,
        signature_key=row.signature_key,
        calls=list(row.brevo_calls or ()),
    )


class SqlLedger(SqlDeadLetters):
    """The part of a SQL ledger that is the same on every database (see the module doc)."""

    transient_errors: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

    def __init__(self, engine: Engine, sessions: sessionmaker[Session] | None = None) -> None:
        self.engine = engine
        self.sessions = sessions or make_sessionmaker(engine)

    # -- events ----------------------------------------------------------------------------------
    def event(self, event_id: str) -> EventRow | None:
        with self.sessions() as s:
            row = s.get(ProcessedEvent, event_id)
            return None if row is None else _event_row(row)

    def unsent_events(
        self,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 500,
    ) -> list[EventRow]:
        pe = ProcessedEvent
        query = select(pe).where(
            pe.status.in_(UNSENT_STATUSES),
            pe.applied_at.is_not(None),
            pe.effects["event"].as_string().is_(None),  # Postgres ->>, SQLite JSON_EXTRACT
        )
        if since is not None:
            query = query.where(pe.applied_at >= since)
        if after is not None:
            at, event_id = after
            query = query.where(
                or_(pe.applied_at > at, and_(pe.applied_at == at, pe.event_id > event_id))
            )
        query = query.order_by(pe.applied_at, pe.event_id).limit(limit)
        with self.sessions() as s:
            return [_event_row(row) for row in s.scalars(query)]

    def settled(self, event_ids: Iterable[str]) -> set[str]:
        wanted = list(set(event_ids))
        found: set[str] = set()
        with self.sessions() as s:
            for i in range(0, len(wanted), 500):
                query = select(ProcessedEvent.event_id).where(
                    ProcessedEvent.event_id.in_(wanted[i : i + 500]),
                    ProcessedEvent.status.in_(SETTLED),
                )
                found.update(s.scalars(query))
        return found

    # -- invitee state ---------------------------------------------------------------------------
    def contact_state(self, email: str) -> tuple[list[InviteeRecord], list[NoShowMark]]:
        with self.sessions() as s:
            return contact_state(s, email)

    def contact_states(
        self, emails: Iterable[str]
    ) -> dict[str, tuple[list[InviteeRecord], list[NoShowMark]]]:
        wanted = list(set(emails))
        found: dict[str, tuple[list[InviteeRecord], list[NoShowMark]]] = {}
        with self.sessions() as s:
            for i in range(0, len(wanted), 500):
                rows = s.scalars(select(Invitee).where(Invitee.email.in_(wanted[i : i + 500])))
                by_uri: dict[str, str] = {}
                for r in rows:
                    found.setdefault(r.email, ([], []))[0].append(InviteeRecord.from_dict(r.data))
                    by_uri[r.invitee_uri] = r.email
                if by_uri:
                    marks = s.scalars(select(NoShow).where(NoShow.invitee_uri.in_(list(by_uri))))
                    for m in marks:
                        found[by_uri[m.invitee_uri]][1].append(mark_of(m))
        return found

    # -- tombstones ------------------------------------------------------------------------------
    def add_tombstone(self, email: str, invitee_uris: Iterable[str]) -> None:
        keys = {tombstone_key("email", email): "email"}
        keys |= {tombstone_key("invitee", uri): "invitee" for uri in invitee_uris}
        with self.sessions.begin() as s:
            known = set(s.scalars(select(Tombstone.key_hash).where(Tombstone.key_hash.in_(keys))))
            ts = now()
            s.add_all(
                Tombstone(key_hash=k, kind=kind, created_at=ts)
                for k, kind in keys.items()
                if k not in known
            )

    def is_tombstoned(self, *, email: str | None = None, invitee_uri: str | None = None) -> bool:
        keys = tombstone_keys(email=email, invitee_uri=invitee_uri)
        if not keys:
            return False
        with self.sessions() as s:
            found = s.scalars(select(Tombstone.key_hash).where(Tombstone.key_hash.in_(keys)))
            return found.first() is not None

    # -- last pushed projections -----------------------------------------------------------------
    def contacts(self, after: str | None = None, limit: int | None = None) -> list[str]:
        emails = union(
            select(Invitee.email.label("email")).where(Invitee.email.is_not(None)),
            select(PushedProjectionRow.email.label("email")),
        ).subquery()
        query = select(emails.c.email)
        if after is not None:
            query = query.where(emails.c.email > after)
        query = query.order_by(emails.c.email).limit(limit)
        with self.sessions() as s:
            return [str(e) for e in s.scalars(query)]

    def last_pushed(self, email: str) -> PushedProjection | None:
        with self.sessions() as s:
            row = s.get(PushedProjectionRow, email)
            return None if row is None else _pushed(row)

    def last_pushed_many(self, emails: Iterable[str]) -> dict[str, PushedProjection]:
        wanted = list(set(emails))
        found: dict[str, PushedProjection] = {}
        with self.sessions() as s:
            for i in range(0, len(wanted), 500):
                batch = wanted[i : i + 500]
                query = select(PushedProjectionRow).where(PushedProjectionRow.email.in_(batch))
                found.update((row.email, _pushed(row)) for row in s.scalars(query))
        return found

    def stale_pushed(self, fingerprint: str) -> int:
        query = (
            select(func.count())
            .select_from(PushedProjectionRow)
            .where(PushedProjectionRow.mapping_fingerprint != fingerprint)
        )
        with self.sessions() as s:
            return int(s.scalar(query) or 0)

    def record_pushed(self, pushed: PushedProjection) -> None:
        with self.sessions.begin() as s:
            row = s.get(PushedProjectionRow, pushed.email, with_for_update=True)
            if row is None:
                row = PushedProjectionRow(email=pushed.email)
                s.add(row)
            row.attributes = dict(pushed.attributes)
            row.list_ids = list(pushed.list_ids)
            row.projection_hash = pushed.projection_hash
            row.mapping_fingerprint = pushed.mapping_fingerprint
            row.pushed_at = pushed.pushed_at
            row.event_id = pushed.event_id
