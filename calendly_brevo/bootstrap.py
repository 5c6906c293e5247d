"""The composition root: settings in, wired services out. Tests call it with fakes.

Nothing is opened at import time. ``Services`` opens its resources lazily and closes them in
``close()``, so a CLI command only pays for what it touches (``dlq list`` never connects to Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.config import Settings
from calendly_brevo.db.engine import make_engine, make_sessionmaker, sqlite_file
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
            pool_size=self.settings.worker.threads + 2,
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


class LazyServices:
    """What CLI commands get as ``ctx.obj``: settings loaded on first use, services likewise.

    Loading is deferred so ``--help`` works with a broken config, and so a command that fails
    on config reports it through the CLI's one-line error path.
    """

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._services: Services | None = None
        self._settings: Settings | None = None
        #: Set by read-only commands before they touch a service (see ``Services.read_only``).
        self.read_only = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from calendly_brevo.config import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services(self.settings, read_only=self.read_only)
        return self._services

    @property
    def engine(self) -> Engine:
        return self.services.engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.services.sessions

    @property
    def ledger(self) -> Ledger:
        return self.services.ledger

    @property
    def enqueuer(self) -> RedisEnqueuer | SqliteEnqueuer:
        return self.services.enqueuer

    @property
    def redis(self) -> redis.Redis:
        return self.services.redis

    def __getattr__(self, name: str) -> Any:
        # Lets commands written against ``Services`` reach any other attribute directly.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.services, name)

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
