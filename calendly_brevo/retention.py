"""Retention of invitee PII: what ``prune`` may strip from ``invitees`` without changing Brevo.

Brevo's contact is a projection of every invitee record of one email
(:mod:`calendly_brevo.projection`): the booking attributes come from the primary booking, and
the person's attributes (names, phone, answers) from the newest record, older records only
filling what the newest lacks. So a record past retention that is not the newest of its email
loses each name, phone and answer that the newest record also carries: the projection cannot
see the difference. Kept: the URIs, the email (the contact key), status, times and the other
state the projection and dedup need; the newest record keeps everything (it is the person's
current data in Brevo; ``forget`` removes it on request).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from calendly_brevo.db.models import Invitee
from calendly_brevo.state import stamp

PII_FIELDS = ("name", "first_name", "last_name", "text_reminder_number")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _newest(rows: list[Invitee]) -> Invitee:
    return max(rows, key=lambda r: (stamp((r.data or {}).get("created_at")), r.invitee_uri))


def _stripped(data: dict[str, Any], newest: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for field in PII_FIELDS:
        if out.get(field) and newest.get(field):
            out[field] = None
    answered = {qa[0] for qa in newest.get("questions_and_answers") or [] if qa and qa[1]}
    qas = out.get("questions_and_answers") or []
    out["questions_and_answers"] = [qa for qa in qas if not qa or qa[0] not in answered]
    return out


def prune_invitee_pii(s: Session, cutoff: datetime) -> int:
    """Strip redundant PII from invitee records older than ``cutoff``; returns rows changed."""
    emails = set(s.scalars(select(Invitee.email).where(Invitee.updated_at < cutoff)).all())
    changed = 0
    for email in sorted(emails):
        rows = list(s.scalars(select(Invitee).where(Invitee.email == email)).all())
        newest = _newest(rows)
        for row in rows:
            if row is newest or _aware(row.updated_at) >= cutoff:
                continue
            data = _stripped(dict(row.data or {}), dict(newest.data or {}))
            if data != row.data:
                row.data = data
                changed += 1
    return changed
