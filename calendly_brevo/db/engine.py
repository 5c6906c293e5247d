"""Engine and session factory, one per process, made from the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.private_files import private_file


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///…`` URL; ``None`` for another database, an in-memory
    one or a ``file:`` URI."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


#: Worker threads that may run statements at once: a thread holds a pooled connection only
#: for a statement or a short transaction (a contact lock holds none, see
#: :mod:`calendly_brevo.ledger.pg_locks`), and the GIL runs one at a time anyway.
POOL_THREADS = 8


def pool_size_for(threads: int) -> int:
    """The database pool of a process running ``threads`` worker threads (the pool may grow as
    much again, see :func:`make_engine`): enough for the ones in a statement at once and 2
    more, not one per thread."""
    return min(threads, POOL_THREADS) + 2


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    connect_timeout: int = 5,
    statement_timeout: float = 30.0,
) -> Engine:
    """Create the engine. SQLite gets WAL and a busy timeout so threads can share it; Postgres
    a connect timeout and a statement timeout (seconds), so a stalled server fails a call."""
    if url.startswith("sqlite"):
        if (path := sqlite_file(url)) is not None:
            private_file(path)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(
        # No pre-ping: it is a round trip per checkout on the worker's hot path. A connection
        # that died with a Postgres restart fails once, SQLAlchemy then drops the whole pool,
        # and the event is retried.
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        pool_timeout=connect_timeout + statement_timeout,
        connect_args={
            "connect_timeout": connect_timeout,
            "options": _with_statement_timeout(url, statement_timeout),
        },
    )


def _with_statement_timeout(url: str, seconds: float) -> str:
    """libpq ``options`` from the URL (e.g. a search_path) plus the statement timeout."""
    given = make_url(url).query.get("options", "")
    if isinstance(given, tuple):
        given = " ".join(given)
    return f"{given} -c statement_timeout={int(seconds * 1000)}".strip()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
