"""The ledger: what the connector remembers about events and contacts (see :mod:`.base`).

:func:`open_ledger` is the one place that picks an implementation: Postgres for a Postgres
``DATABASE_URL``, else the SQLite file of the embedded mode. Tests pass
:class:`~calendly_brevo.ledger.memory.MemoryLedger` where they need no database.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.ledger.base import (
    DONE,
    Arrival,
    Claim,
    DeadLetter,
    DeadLetterFilter,
    EventRow,
    Failure,
    Ledger,
    PushedProjection,
    State,
    record_durably,
)

__all__ = [
    "DONE",
    "Arrival",
    "Claim",
    "DeadLetter",
    "DeadLetterFilter",
    "EventRow",
    "Failure",
    "Ledger",
    "PushedProjection",
    "State",
    "open_ledger",
    "record_durably",
]


def open_ledger(engine: Engine, sessions: sessionmaker[Session] | None = None) -> Ledger:
    """The ledger for ``engine``'s database (made from ``Settings.database_url``)."""
    if engine.dialect.name == "postgresql":
        from calendly_brevo.ledger.postgres import PostgresLedger

        return PostgresLedger(engine, sessions)
    if engine.dialect.name == "sqlite":
        from calendly_brevo.ledger.sqlite import SqliteLedger

        return SqliteLedger(engine, sessions)
    raise ValueError(f"no ledger for {engine.dialect.name} databases (Postgres or SQLite)")
