"""Dead-letter operations behind ``calendly-brevo dlq``: list, show, replay, purge.

A replay re-enqueues the stored raw event exactly as a webhook would have, with source
``replay``. It takes the normal pipeline, dedup included: an event whose effects partly happened
before it failed keeps its ``effects`` record, so its custom event is not sent a second time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.db.models import DeadLetter
from calendly_brevo.queueing import Enqueuer

_T = TypeVar("_T")


@dataclass(frozen=True)
class Filter:
    ids: tuple[int, ...] = ()
    event: str | None = None
    error: str | None = None
    since: datetime | None = None
    include_replayed: bool = False

    def apply(self, query: Select[_T]) -> Select[_T]:
        if self.ids:
            query = query.where(DeadLetter.id.in_(self.ids))
        if self.event:
            query = query.where(DeadLetter.event_name == self.event)
        if self.error:
            like = f"%{self.error}%"
            query = query.where(or_(DeadLetter.reason.ilike(like), DeadLetter.error.ilike(like)))
        if self.since:
            query = query.where(DeadLetter.created_at >= self.since)
        if not self.include_replayed and not self.ids:
            query = query.where(DeadLetter.replayed_at.is_(None))
        return query


def list_dead_letters(
    sessions: sessionmaker[Session], f: Filter, limit: int = 100
) -> list[DeadLetter]:
    with sessions() as s:
        q = f.apply(select(DeadLetter)).order_by(DeadLetter.id).limit(limit)
        return list(s.scalars(q).all())


def get_dead_letter(sessions: sessionmaker[Session], dl_id: int) -> DeadLetter | None:
    with sessions() as s:
        return s.get(DeadLetter, dl_id)


def replay(sessions: sessionmaker[Session], enqueuer: Enqueuer, f: Filter) -> list[int]:
    """Re-enqueue matching dead letters; mark each replayed only after its enqueue succeeded.
    One whose payload retention removed (``prune``) has nothing to replay and is skipped."""
    replayed: list[int] = []
    with sessions() as s:
        rows = list(s.scalars(f.apply(select(DeadLetter)).order_by(DeadLetter.id)).all())
    for row in rows:
        if not row.payload:
            continue
        enqueuer.enqueue(row.payload, received_at=time.time(), source="replay")
        with sessions.begin() as s:
            s.execute(
                update(DeadLetter)
                .where(DeadLetter.id == row.id)
                .values(replayed_at=datetime.now(UTC))
            )
        replayed.append(row.id)
    return replayed


def purge(sessions: sessionmaker[Session], f: Filter) -> int:
    with sessions.begin() as s:
        ids = list(s.scalars(f.apply(select(DeadLetter.id))).all())
        if ids:
            s.execute(delete(DeadLetter).where(DeadLetter.id.in_(ids)))
        return len(ids)
