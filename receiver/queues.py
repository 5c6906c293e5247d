"""The receiver's queue adapters: Redis (production) and the SQLite queue (embedded)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from calendly_brevo.config import Settings
from calendly_brevo.queueing import (
    AsyncRedisEnqueuer,
    SqliteEnqueuer,
    SqliteQueue,
    sqlite_queue_path,
)


class AsyncSqliteQueue:
    """The embedded queue from async code: each insert commits (fsync) in a thread."""

    def __init__(self, enqueuer: SqliteEnqueuer) -> None:
        self.enqueuer = enqueuer

    async def enqueue(
        self,
        body: str,
        *,
        received_at: float,
        source: str = "webhook",
        signature_key: str | None = None,
    ) -> str:
        return await asyncio.to_thread(
            self.enqueuer.enqueue,
            body,
            received_at=received_at,
            source=source,
            signature_key=signature_key,
        )

    async def ping(self) -> bool:
        try:
            await asyncio.to_thread(self.enqueuer.depth)
        except Exception:  # readiness probe: any failure means not ready
            return False
        return True


async def open_queue(settings: Settings) -> AsyncRedisEnqueuer | AsyncSqliteQueue:
    if settings.storage.redis_url:
        client = aioredis.Redis.from_url(
            settings.storage.redis_url,
            socket_timeout=2,
            socket_connect_timeout=2,
            health_check_interval=30,
            max_connections=256,
        )
        return AsyncRedisEnqueuer(client)
    queue = SqliteQueue(sqlite_queue_path(settings.storage.data_dir))
    return AsyncSqliteQueue(SqliteEnqueuer(queue))
