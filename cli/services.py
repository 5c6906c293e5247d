"""What CLI commands get as ``ctx.obj``: the composition root's
:class:`~calendly_brevo.bootstrap.Services`, built on first use from the ``--config`` file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from calendly_brevo.bootstrap import Services
from calendly_brevo.config import Settings

if TYPE_CHECKING:
    import redis
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from calendly_brevo.ledger import Ledger
    from calendly_brevo.queueing import RedisEnqueuer, SqliteEnqueuer


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
