"""Data lifecycle: prune old payloads, forget a person, and the numbers behind ``status``.

Pruning keeps the ``processed_events`` rows (event id, name, status, timestamps): they are what
makes a late Calendly retry or a backfill replay a no-op. Only the raw payload and the email,
the PII, go, with the log of the Brevo calls made for the event (``trace``); invitee records
lose the names, phones and answers a newer record of the same person also holds
(:mod:`calendly_brevo.retention`). ``forget`` removes what the connector stores about one
email, those call logs included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.db.models import (
    DeadLetter,
    Invitee,
    NoShow,
    ProcessedEvent,
    PushedProjectionRow,
    SyncState,
)
from calendly_brevo.events import normalize_email
from calendly_brevo.retention import prune_invitee_pii

if TYPE_CHECKING:
    from calendly_brevo.queue_erasure import WaitingMessages


@dataclass(frozen=True)
class PruneResult:
    payloads: int
    dead_letters: int
    invitees: int = 0
    open_dead_letter_payloads: int = 0


#: What an open dead letter's payload becomes once retention removed it (the row, its reason
#: and error stay, so ``dlq list`` still shows what failed; ``dlq replay`` skips it).
PRUNED_PAYLOAD = ""


def prune(sessions: sessionmaker[Session], older_than: timedelta) -> PruneResult:
    """Drop PII past retention. Kept: every ``processed_events`` row (event id, name, status,
    times: the dedup that makes a late retry or a backfill replay a no-op), the invitee state the
    projection needs (:mod:`calendly_brevo.retention`), and open dead letters' rows without
    their payload. Removed: raw payloads, emails and Brevo call logs of events in any state (an
    unfinished one is retried from its queued message, which carries its own body, never from
    this copy), replayed dead letters, and the payloads of open ones."""
    cutoff = datetime.now(UTC) - older_than
    with sessions.begin() as s:
        payloads = s.execute(
            update(ProcessedEvent)
            .where(
                ProcessedEvent.updated_at < cutoff,
                or_(
                    ProcessedEvent.payload.is_not(None),
                    ProcessedEvent.email.is_not(None),
                    ProcessedEvent.brevo_calls.is_not(None),
                ),
            )
            .values(payload=None, email=None, brevo_calls=None)
        ).rowcount  # type: ignore[attr-defined]
        dead = s.execute(
            delete(DeadLetter).where(
                DeadLetter.replayed_at.is_not(None), DeadLetter.replayed_at < cutoff
            )
        ).rowcount  # type: ignore[attr-defined]
        open_payloads = s.execute(
            update(DeadLetter)
            .where(
                DeadLetter.replayed_at.is_(None),
                DeadLetter.created_at < cutoff,
                DeadLetter.payload != PRUNED_PAYLOAD,
            )
            .values(payload=PRUNED_PAYLOAD)
        ).rowcount  # type: ignore[attr-defined]
        invitees = prune_invitee_pii(s, cutoff)
    return PruneResult(int(payloads or 0), int(dead or 0), invitees, int(open_payloads or 0))


@dataclass(frozen=True)
class ForgetResult:
    invitees: int
    no_shows: int
    events: int
    dead_letters: int
    #: Waiting messages removed from the queue (ready, delayed, or dead-lettered by Dramatiq).
    queued: int = 0
    #: The person's messages a worker held at that moment: left to finish, not removed.
    held: int = 0


def _payload_emails(raw: str) -> set[str]:
    """Every ``email`` value in a JSON payload, normalised as the worker keys contacts."""
    try:
        doc = json.loads(raw)
    except (TypeError, ValueError):
        return set()
    found: set[str] = set()
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "email" and isinstance(value, str):
                    found.add(normalize_email(value) or value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _person_dead_letters(s: Session, email: str, event_ids: list[str]) -> list[int]:
    """Dead letters about ``email``: by exact, normalised email in the payload or by event id
    (no pattern match over raw JSON, so ``a@x.com`` never hits ``ba@x.com``)."""
    ids = set(event_ids)
    rows = s.execute(select(DeadLetter.id, DeadLetter.event_id, DeadLetter.payload)).all()
    return [r.id for r in rows if r.event_id in ids or email in _payload_emails(r.payload)]


def _message_is_about(email: str) -> Callable[[bytes], bool]:
    """A predicate over an encoded ``process_event(body, …)`` message: is it about ``email``?"""

    def match(data: bytes) -> bool:
        try:
            args = json.loads(data).get("args") or []
        except (TypeError, ValueError, AttributeError):
            return False
        return bool(args) and isinstance(args[0], str) and email in _payload_emails(args[0])

    return match


def forget(
    sessions: sessionmaker[Session], email: str, queue: WaitingMessages | None = None
) -> ForgetResult:
    """Remove what the connector stores about one person. The address is normalised the way
    the worker keys contacts (:func:`calendly_brevo.events.normalize_email`) and matched
    exactly. ``queue`` (:mod:`calendly_brevo.queue_erasure`, either backend) loses the person's
    waiting messages; those a worker holds are counted in ``held`` and left to finish. Also
    drops the last pushed projection and leaves a tombstone (hashes of the email and the
    invitee URIs, no PII). The Brevo contact is deleted by the ``forget`` command."""
    email = normalize_email(email) or email.strip().lower()
    with sessions.begin() as s:
        uris = list(s.scalars(select(Invitee.invitee_uri).where(Invitee.email == email)).all())
        no_shows = 0
        if uris:
            no_shows = s.execute(delete(NoShow).where(NoShow.invitee_uri.in_(uris))).rowcount  # type: ignore[attr-defined]
        invitees = s.execute(delete(Invitee).where(Invitee.email == email)).rowcount  # type: ignore[attr-defined]
        event_ids = list(
            s.scalars(
                select(ProcessedEvent.event_id).where(
                    or_(ProcessedEvent.email == email, ProcessedEvent.invitee_uri.in_(uris))
                )
            ).all()
        )
        events = s.execute(
            update(ProcessedEvent)
            .where(or_(ProcessedEvent.email == email, ProcessedEvent.invitee_uri.in_(uris)))
            .values(payload=None, email=None, invitee_uri=None, brevo_calls=None)
        ).rowcount  # type: ignore[attr-defined]
        doomed = _person_dead_letters(s, email, event_ids)
        dead = len(doomed)
        if doomed:
            s.execute(delete(DeadLetter).where(DeadLetter.id.in_(doomed)))
    erased = queue.erase(_message_is_about(email)) if queue is not None else None
    _forget_pushed(sessions, email)
    _tombstone(sessions, email, uris)
    return ForgetResult(
        int(invitees or 0),
        int(no_shows or 0),
        int(events or 0),
        int(dead or 0),
        queued=erased.removed if erased else 0,
        held=erased.held if erased else 0,
    )


def _forget_pushed(sessions: sessionmaker[Session], email: str) -> None:
    """The last pushed projection holds the person's attributes: it goes too."""
    with sessions.begin() as s:
        s.execute(delete(PushedProjectionRow).where(PushedProjectionRow.email == email))


def _tombstone(sessions: sessionmaker[Session], email: str, invitee_uris: list[str]) -> None:
    """Remember (as hashes) that this person was forgotten, so that the worker does not store
    or push a redelivered or backfilled *past* event of theirs again. A new booking has a new
    invitee URI and is processed as usual."""
    from calendly_brevo.ledger import open_ledger

    engine = sessions.kw["bind"]
    open_ledger(engine, sessions).add_tombstone(email, invitee_uris)


def status_numbers(sessions: sessionmaker[Session]) -> dict[str, Any]:
    from calendly_brevo.calendly.subscription_store import STATE_NAME

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
        suppressed = dict(
            s.execute(
                select(ProcessedEvent.last_error, func.count())
                .where(ProcessedEvent.status == "suppressed")
                .group_by(ProcessedEvent.last_error)
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
        #: ``suppressed`` events (stored, not pushed) by reason.
        "suppressed_by_reason": {str(k or "unknown"): v for k, v in suppressed.items()},
        "dead_letters_open": int(open_dl or 0),
        "subscription": dict(sub.value) if sub else None,
    }
