"""Data lifecycle: prune old payloads, forget a person, and the numbers behind ``status``.

Pruning keeps the ``processed_events`` rows (event id, name, status, timestamps): they are what
makes a late Calendly retry or a backfill replay a no-op. Only the raw payload and the email,
the PII, go. ``forget`` removes what the connector stores about one email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.db.models import DeadLetter, Invitee, NoShow, ProcessedEvent, SyncState


@dataclass(frozen=True)
class PruneResult:
    payloads: int
    dead_letters: int


def prune(sessions: sessionmaker[Session], older_than: timedelta) -> PruneResult:
    cutoff = datetime.now(UTC) - older_than
    with sessions.begin() as s:
        payloads = s.execute(
            update(ProcessedEvent)
            .where(
                ProcessedEvent.updated_at < cutoff,
                ProcessedEvent.status.in_(("applied", "ignored")),
                or_(ProcessedEvent.payload.is_not(None), ProcessedEvent.email.is_not(None)),
            )
            .values(payload=None, email=None)
        ).rowcount  # type: ignore[attr-defined]
        dead = s.execute(
            delete(DeadLetter).where(
                DeadLetter.replayed_at.is_not(None), DeadLetter.replayed_at < cutoff
            )
        ).rowcount  # type: ignore[attr-defined]
    return PruneResult(int(payloads or 0), int(dead or 0))


@dataclass(frozen=True)
class ForgetResult:
    invitees: int
    no_shows: int
    events: int
    dead_letters: int


def forget(sessions: sessionmaker[Session], email: str) -> ForgetResult:
    email = email.strip().lower()
    with sessions.begin() as s:
        uris = list(s.scalars(select(Invitee.invitee_uri).where(Invitee.email == email)).all())
        no_shows = 0
        if uris:
            no_shows = s.execute(delete(NoShow).where(NoShow.invitee_uri.in_(uris))).rowcount  # type: ignore[attr-defined]
        invitees = s.execute(delete(Invitee).where(Invitee.email == email)).rowcount  # type: ignore[attr-defined]
        events = s.execute(
            update(ProcessedEvent)
            .where(or_(ProcessedEvent.email == email, ProcessedEvent.invitee_uri.in_(uris)))
            .values(payload=None, email=None, invitee_uri=None)
        ).rowcount  # type: ignore[attr-defined]
        dead = s.execute(delete(DeadLetter).where(DeadLetter.payload.ilike(f"%{email}%"))).rowcount  # type: ignore[attr-defined]
    return ForgetResult(int(invitees or 0), int(no_shows or 0), int(events or 0), int(dead or 0))


def status_numbers(sessions: sessionmaker[Session]) -> dict[str, Any]:
    from calendly_brevo.calendly.subscriptions import STATE_NAME

    with sessions() as s:
        last = s.execute(
            select(ProcessedEvent.event_name, ProcessedEvent.applied_at, ProcessedEvent.received_at)
            .where(ProcessedEvent.status == "applied")
            .order_by(ProcessedEvent.applied_at.desc())
            .limit(1)
        ).first()
        by_status = dict(
            s.execute(
                select(ProcessedEvent.status, func.count()).group_by(ProcessedEvent.status)
            ).all()
        )
        open_dl = s.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.replayed_at.is_(None))
        )
        sub = s.get(SyncState, STATE_NAME)  # written by `webhooks install` and `webhooks check`
    lag = None
    if last and last.applied_at and last.received_at:
        lag = (last.applied_at - last.received_at).total_seconds()
    return {
        "last_event": last.event_name if last else None,
        "last_applied_at": last.applied_at if last else None,
        "last_lag_seconds": lag,
        "events_by_status": by_status,
        "dead_letters_open": int(open_dl or 0),
        "subscription": dict(sub.value) if sub else None,
    }
