"""The composition root: settings in, wired services out. Tests call it with fakes.

Nothing is opened at import time. ``Services`` opens its resources lazily and closes them in
``close()``, so a CLI command only pays for what it touches (``dlq list`` never connects to Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.config import Settings
from calendly_brevo.db.engine import make_engine, make_sessionmaker, pool_size_for, sqlite_file
from calendly_brevo.errors import ServiceUnavailable
from calendly_brevo.queueing import (
    RedisEnqueuer,
    SqliteEnqueuer,
    make_enqueuer,
    sqlite_queue_path,
)

if TYPE_CHECKING:
    import redis

    from calendly_brevo.ledger import Ledger


_CREATES_IT = (
    "`calendly-brevo run` (or `calendly-brevo migrate`) creates it; or point "
    "CONNECTOR_DATA_DIR / DATABASE_URL at the one the connector uses"
)


@dataclass
class Services:
    settings: Settings
    _closers: list[object] = field(default_factory=list)
    #: Read-only commands (status, doctor, dlq list, …) never create the embedded store or
    #: queue: a missing one is a :class:`ServiceUnavailable` naming the path.
    read_only: bool = False

    def _must_exist(self, path: Path, what: str, fix: str = _CREATES_IT) -> None:
        if self.read_only and not path.exists():
            raise ServiceUnavailable(f"no {what} at {path} yet", fix)

    @cached_property
    def engine(self) -> Engine:
        storage = self.settings.storage
        if (path := sqlite_file(self.settings.database_url)) is not None:
            self._must_exist(path, "database")
        return make_engine(
            self.settings.database_url,
            pool_size=pool_size_for(self.settings.worker.threads),
            connect_timeout=storage.db_connect_timeout_seconds,
            statement_timeout=storage.db_statement_timeout_seconds,
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def ledger(self) -> Ledger:
        """Postgres when ``DATABASE_URL`` names one, else the embedded SQLite file."""
        from calendly_brevo.ledger import open_ledger

        return open_ledger(self.engine, self.sessions)

    @cached_property
    def redis(self) -> redis.Redis:
        import redis as redis_lib

        url = self.settings.storage.redis_url
        if not url:
            raise RuntimeError("no REDIS_URL: this deployment runs the embedded queue")
        return redis_lib.Redis.from_url(url, health_check_interval=30)

    @cached_property
    def enqueuer(self) -> RedisEnqueuer | SqliteEnqueuer:
        if self.settings.storage.redis_url:
            return RedisEnqueuer(self.redis)
        self._must_exist(
            sqlite_queue_path(self.settings.storage.data_dir),
            "queue",
            "`calendly-brevo run` creates it; nothing can be waiting before that",
        )
        return make_enqueuer(None, self.settings.storage.data_dir)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
