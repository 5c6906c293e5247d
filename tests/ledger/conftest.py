"""Ledgers for the contract suite: one fixture, the three implementations.

``opened`` gives a function that opens a ledger over the same storage each time it is called:
a new engine (and pool) on the same database for the SQL ledgers, the same tables for the
in-memory one. Opening again is how a test sees a worker reconnect after an outage.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from calendly_brevo.db.engine import make_engine
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.ledger import Ledger, open_ledger
from calendly_brevo.ledger.memory import MemoryLedger, MemoryTables
from calendly_brevo.state import InviteeRecord, NoShowMark

Opener = Callable[[], Ledger]

#: Advisory locks are database-wide: other test runs on the same database must not share these.
_RUN = secrets.token_hex(4)
A = f"ann-{_RUN}@example.com"
B = f"bob-{_RUN}@example.com"


def _sql_opener(url: str) -> Iterator[Opener]:
    engines: list[Engine] = []

    def opened() -> Ledger:
        engine = make_engine(url)
        if not engines:
            upgrade(engine)
        engines.append(engine)
        return open_ledger(engine)

    yield opened
    for engine in engines:
        engine.dispose()


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "memory":
        tables = MemoryTables()
        yield lambda: MemoryLedger(tables)
    elif request.param == "sqlite":
        yield from _sql_opener(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        yield from _sql_opener(request.getfixturevalue("postgres_url"))


@pytest.fixture
def ledger(opened: Opener) -> Ledger:
    return opened()


def record(uri: str, email: str, day: int = 1, **fields: Any) -> InviteeRecord:
    return InviteeRecord(
        invitee_uri=uri, email=email, updated_at=f"2024-05-0{day}T10:00:00Z", **fields
    )


def mark(invitee: str, uri: str | None, day: int = 1, **flags: bool) -> NoShowMark:
    return NoShowMark(uri, invitee, marked_at=f"2024-05-0{day}T12:00:00Z", **flags)
