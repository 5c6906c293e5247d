"""Dead letters in SQL, the same on Postgres and SQLite (through the ORM: off the hot path)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.db.models import DeadLetter as DeadLetterRow
from calendly_brevo.db.models import ProcessedEvent
from calendly_brevo.ledger.base import (
    ERROR_LIMIT,
    DeadLetter,
    DeadLetterFilter,
    Failure,
    aware,
    now,
)
from calendly_brevo.logs import scrub_error

_T = TypeVar("_T")


def _where(query: Select[_T], f: DeadLetterFilter) -> Select[_T]:
    if f.ids:
        query = query.where(DeadLetterRow.id.in_(f.ids))
    if f.event:
        query = query.where(DeadLetterRow.event_name == f.event)
    if f.error:
        like = f"%{f.error}%"
        query = query.where(or_(DeadLetterRow.reason.ilike(like), DeadLetterRow.error.ilike(like)))
    if f.since:
        query = query.where(DeadLetterRow.created_at >= f.since)
    if not f.include_replayed and not f.ids:
        query = query.where(DeadLetterRow.replayed_at.is_(None))
    return query


def _entry(row: DeadLetterRow) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        event_id=row.event_id,
        event_name=row.event_name,
        reason=row.reason,
        error=row.error,
        attempts=row.attempts,
        payload=row.payload,
        source=row.source,
        received_at=aware(row.received_at),
        created_at=aware(row.created_at) or row.created_at,
        replayed_at=aware(row.replayed_at),
    )


def _mark_dead(s: Session, event_id: str, error: str, calls: list[dict[str, Any]] | None) -> None:
    values: dict[str, Any] = {"status": "dead", "last_error": error, "updated_at": now()}
    if calls is not None:
        values["brevo_calls"] = list(calls)
    s.execute(update(ProcessedEvent).where(ProcessedEvent.event_id == event_id).values(values))


class SqlDeadLetters:
    sessions: sessionmaker[Session]

    def dead_letter(self, failure: Failure, *, calls: list[dict[str, Any]] | None = None) -> int:
        error = scrub_error(failure.error)[:ERROR_LIMIT]
        event_id = failure.event_id
        with self.sessions.begin() as s:
            row = None
            if event_id is not None:
                _mark_dead(s, event_id, error, calls)
                row = s.scalars(
                    select(DeadLetterRow)
                    .where(DeadLetterRow.event_id == event_id, DeadLetterRow.replayed_at.is_(None))
                    .order_by(DeadLetterRow.id.desc())
                    .limit(1)
                    .with_for_update()
                ).first()
            if row is None:
                row = DeadLetterRow(
                    event_id=event_id,
                    event_name=failure.event_name,
                    received_at=failure.received_at,
                )
                s.add(row)
            row.reason, row.error, row.attempts = failure.reason, error, failure.attempts
            row.payload, row.source, row.created_at = failure.payload, failure.source, now()
            s.flush()
            return int(row.id)

    def dead_letters(self, f: DeadLetterFilter, limit: int | None = 100) -> list[DeadLetter]:
        with self.sessions() as s:
            query = _where(select(DeadLetterRow), f).order_by(DeadLetterRow.id).limit(limit)
            return [_entry(row) for row in s.scalars(query)]

    def dead_letter_by_id(self, dl_id: int) -> DeadLetter | None:
        with self.sessions() as s:
            row = s.get(DeadLetterRow, dl_id)
            return _entry(row) if row is not None else None

    def mark_replayed(self, dl_id: int) -> None:
        with self.sessions.begin() as s:
            s.execute(
                update(DeadLetterRow).where(DeadLetterRow.id == dl_id).values(replayed_at=now())
            )

    def purge_dead_letters(self, f: DeadLetterFilter) -> int:
        with self.sessions.begin() as s:
            ids = list(s.scalars(_where(select(DeadLetterRow.id), f)))
            if ids:
                s.execute(delete(DeadLetterRow).where(DeadLetterRow.id.in_(ids)))
            return len(ids)

    def open_dead_letters(self) -> int:
        query = select(func.count()).select_from(DeadLetterRow)
        with self.sessions() as s:
            return int(s.scalar(query.where(DeadLetterRow.replayed_at.is_(None))) or 0)
