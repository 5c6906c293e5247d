"""The queue contract shared by the receiver, the CLI and the worker.

The receiver must not import worker code, yet it enqueues Dramatiq messages: this module builds
the message dict exactly as ``dramatiq.Message.asdict()`` would (actor ``process_event`` on queue
``calendly``, args ``[raw_body, received_at, source]``, and for a webhook the label of the key
that verified it in the option ``signature_key``) and writes it the way Dramatiq's
``RedisBroker`` does (``HSET <ns>:<queue>.msgs id data`` + ``RPUSH <ns>:<queue> id``, in one
MULTI so a crash cannot leave half a message). The embedded mode writes the same bytes into the
SQLite queue of :mod:`worker.sqlite_broker`, which this module also owns the table of.

Anything that enqueues (webhooks, backfill, reconcile, ``dlq replay``) goes through here, so a
replayed event is byte-for-byte the message a webhook would have produced (less the key label:
nothing verified a replay). The label is an *option*, not an argument, so a message queued by an
older receiver (no option) and one read by an older worker (which ignores unknown options) both
still process.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from calendly_brevo.errors import QueueUnavailable
from calendly_brevo.private_files import private_file

QUEUE_NAME = "calendly"
ACTOR_NAME = "process_event"
NAMESPACE = "dramatiq"
#: The message option that carries the label of the signing key that verified a webhook.
SIGNATURE_KEY_OPTION = "signature_key"


def build_message(
    body: str,
    *,
    received_at: float,
    source: str = "webhook",
    signature_key: str | None = None,
) -> dict[str, Any]:
    """A Dramatiq message dict for ``process_event(body, received_at, source)``."""
    message_id = str(uuid.uuid4())
    options: dict[str, Any] = {"redis_message_id": message_id}
    if signature_key is not None:
        options[SIGNATURE_KEY_OPTION] = signature_key
    return {
        "queue_name": QUEUE_NAME,
        "actor_name": ACTOR_NAME,
        "args": [body, received_at, source],
        "kwargs": {},
        "options": options,
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def queue_key(namespace: str = NAMESPACE, queue: str = QUEUE_NAME) -> str:
    return f"{namespace}:{queue}"


class Enqueuer(Protocol):
    """What the CLI and tests use to put an event on the queue (sync)."""

    def enqueue(self, body: str, *, received_at: float, source: str) -> str: ...

    def depth(self) -> dict[str, int]: ...


# --- Redis --------------------------------------------------------------------------------------
class AsyncRedisEnqueuer:
    """Receiver side: concurrent webhooks share one round trip, and each still waits for it.

    A request's message joins a batch; one ``MULTI / HSET msgs id1 data1 id2 data2 … /
    RPUSH queue id1 id2 … / EXEC`` writes the batch, and only then does each request's
    ``enqueue`` return (so a 2xx still means "in Redis"). Only one batch is in flight at a time:
    the messages that arrive while it travels form the next one, so under light load a batch is
    one message and adds no delay, and under heavy load the number of round trips (and the
    Redis client's per-command Python cost, the receiver's largest) stays small. One MULTI
    still holds each message's HSET and RPUSH, so a crash cannot leave half a message. If the
    write fails, every request in that batch gets :class:`QueueUnavailable` (a 503).
    """

    #: Upper bound on messages per round trip (keeps one batch's command a few MB at most).
    MAX_BATCH = 256

    def __init__(self, client: aioredis.Redis, namespace: str = NAMESPACE) -> None:
        self.client = client
        self.key = queue_key(namespace)
        self._pending: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def enqueue(
        self,
        body: str,
        *,
        received_at: float,
        source: str = "webhook",
        signature_key: str | None = None,
    ) -> str:
        message = build_message(
            body, received_at=received_at, source=source, signature_key=signature_key
        )
        rid = message["options"]["redis_message_id"]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rid, encode(message), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        await done
        return str(message["message_id"])

    async def _write_batches(self) -> None:
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            fields: dict[str, bytes] = {rid: data for rid, data, _ in batch}
            try:
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.hset(f"{self.key}.msgs", mapping=fields)  # type: ignore[arg-type]
                    pipe.rpush(self.key, *fields)
                    await pipe.execute()
            except (redis.RedisError, OSError) as exc:
                for _, _, done in batch:
                    if not done.done():
                        error = QueueUnavailable(f"redis: {type(exc).__name__}")
                        error.__cause__ = exc
                        done.set_exception(error)
            except BaseException as exc:  # cancelled (shutdown): no request may hang
                for _, _, done in batch + self._pending:
                    if not done.done():
                        done.set_exception(QueueUnavailable(f"redis: {type(exc).__name__}"))
                self._pending.clear()
                raise
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()


class RedisEnqueuer:
    """CLI side (backfill, reconcile, dlq replay): same bytes, sync client."""

    def __init__(self, client: redis.Redis, namespace: str = NAMESPACE) -> None:
        self.client = client
        self.namespace = namespace
        self.key = queue_key(namespace)

    def enqueue(
        self, body: str, *, received_at: float, source: str, signature_key: str | None = None
    ) -> str:
        message = build_message(
            body, received_at=received_at, source=source, signature_key=signature_key
        )
        rid = message["options"]["redis_message_id"]
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(f"{self.key}.msgs", rid, encode(message))
                pipe.rpush(self.key, rid)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise QueueUnavailable(f"redis: {type(exc).__name__}") from exc
        return str(message["message_id"])

    def depth(self) -> dict[str, int]:
        try:
            return {
                "ready": int(self.client.llen(self.key)),
                "delayed": int(self.client.llen(f"{self.key}.DQ")),
                "dead": int(self.client.zcard(f"{self.key}.XQ")),
            }
        except (redis.RedisError, OSError) as exc:
            raise QueueUnavailable(f"redis: {type(exc).__name__}") from exc


# --- SQLite (embedded) --------------------------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    data BLOB NOT NULL,
    eta INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'ready',
    taken_at INTEGER
);
CREATE INDEX IF NOT EXISTS ix_queue_messages_ready ON queue_messages (queue, state, eta, seq);
"""


class SqliteQueue:
    """A durable FIFO in one SQLite file (WAL), safe for threads and for several processes.

    ``put`` commits before it returns, so the receiver's 2xx means the event is on disk.
    ``take`` marks a row ``taken``; ``ack`` deletes it; ``release_taken`` (run at start-up)
    makes rows a dead process held ready again. Weakness, said plainly: it is one file on one
    machine, so the embedded mode is for small teams; production uses Redis.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        private_file(self.path)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def put(self, queue: str, message_id: str, data: bytes, *, eta: int = 0) -> None:
        try:
            self._conn().execute(
                "INSERT INTO queue_messages (id, queue, data, eta) VALUES (?, ?, ?, ?)",
                (message_id, queue, data, eta),
            )
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"sqlite: {exc}") from exc

    def take(self, queue: str, now_ms: int) -> tuple[str, bytes] | None:
        conn = self._conn()
        row = conn.execute(
            "UPDATE queue_messages SET state = 'taken', taken_at = ? WHERE seq = ("
            " SELECT seq FROM queue_messages WHERE queue = ? AND state = 'ready' AND eta <= ?"
            " ORDER BY seq LIMIT 1) RETURNING id, data",
            (now_ms, queue, now_ms),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def ack(self, message_id: str) -> None:
        self._conn().execute("DELETE FROM queue_messages WHERE id = ?", (message_id,))

    def nack(self, message_id: str) -> None:
        self._conn().execute("UPDATE queue_messages SET state = 'dead' WHERE id = ?", (message_id,))

    def requeue(self, message_id: str) -> None:
        self._conn().execute(
            "UPDATE queue_messages SET state = 'ready', taken_at = NULL WHERE id = ?",
            (message_id,),
        )

    def release_taken(self) -> int:
        cur = self._conn().execute(
            "UPDATE queue_messages SET state = 'ready', taken_at = NULL WHERE state = 'taken'"
        )
        return cur.rowcount

    def count(self, queue: str, state: str = "ready") -> int:
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM queue_messages WHERE queue = ? AND state = ?", (queue, state)
            )
            .fetchone()
        )
        return int(row[0])

    def remove_ready(self, match: Callable[[bytes], bool]) -> int:
        """Delete the waiting (ready or delayed) messages ``match`` accepts; returns how many.
        A message a worker has taken is left to finish."""
        conn = self._conn()
        rows = conn.execute("SELECT id, data FROM queue_messages WHERE state = 'ready'").fetchall()
        doomed = [(row[0],) for row in rows if match(bytes(row[1]))]
        conn.executemany("DELETE FROM queue_messages WHERE id = ? AND state = 'ready'", doomed)
        return len(doomed)

    def count_taken(self, match: Callable[[bytes], bool]) -> int:
        """How many messages a worker holds right now that ``match`` accepts."""
        rows = self._conn().execute("SELECT data FROM queue_messages WHERE state = 'taken'")
        return sum(1 for row in rows.fetchall() if match(bytes(row[0])))

    def purge(self, queue: str) -> None:
        self._conn().execute("DELETE FROM queue_messages WHERE queue = ?", (queue,))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class SqliteEnqueuer:
    def __init__(self, queue: SqliteQueue) -> None:
        self.queue = queue

    def enqueue(
        self, body: str, *, received_at: float, source: str, signature_key: str | None = None
    ) -> str:
        message = build_message(
            body, received_at=received_at, source=source, signature_key=signature_key
        )
        self.queue.put(QUEUE_NAME, message["options"]["redis_message_id"], encode(message))
        return str(message["message_id"])

    def depth(self) -> dict[str, int]:
        return {
            "ready": self.queue.count(QUEUE_NAME),
            "delayed": self.queue.count(f"{QUEUE_NAME}.DQ"),
            "dead": self.queue.count(QUEUE_NAME, "dead"),
        }


def sqlite_queue_path(data_dir: Path) -> Path:
    return data_dir / "queue.db"


def make_enqueuer(redis_url: str | None, data_dir: Path) -> RedisEnqueuer | SqliteEnqueuer:
    """The sync enqueuer for this deployment: Redis when configured, else the SQLite queue."""
    if redis_url:
        return RedisEnqueuer(redis.Redis.from_url(redis_url))
    return SqliteEnqueuer(SqliteQueue(sqlite_queue_path(data_dir)))
