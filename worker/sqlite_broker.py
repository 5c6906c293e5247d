"""A durable Dramatiq broker over one SQLite file, for the embedded single-process mode.

It keeps Dramatiq's semantics so the same actors, middleware and ``Worker`` run unchanged:
messages go to ``<queue>``; delayed ones (retries) to ``<queue>.DQ`` with an ``eta`` the worker
honours; ``ack`` deletes, ``nack`` marks dead, ``requeue`` makes ready again. A message a crashed
process held is ``taken`` on disk and becomes ready again at the next start
(:meth:`SqliteQueue.release_taken`), so an accepted event is never lost to a restart.

Weakness: polling (every ``poll_interval`` seconds when idle) rather than blocking pops, and one
machine only. That is the trade for needing nothing but Python.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from dramatiq.broker import Broker, Consumer, MessageProxy
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import QueueNotFound
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from calendly_brevo.queueing import SqliteQueue


class SqliteBroker(Broker):
    def __init__(
        self,
        queue: SqliteQueue,
        middleware: list[Middleware] | None = None,
        *,
        poll_interval: float = 0.05,
    ) -> None:
        super().__init__(middleware=middleware)
        self.store = queue
        self.poll_interval = poll_interval
        self.released = self.store.release_taken()

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> Consumer:
        if queue_name not in self.queues and queue_name not in self.delay_queues:
            raise QueueNotFound(queue_name)
        return _SqliteConsumer(self, queue_name, prefetch, timeout)

    def declare_queue(self, queue_name: str) -> None:
        if queue_name in self.queues:
            return
        self.emit_before("declare_queue", queue_name)
        self.queues[queue_name] = None
        self.emit_after("declare_queue", queue_name)
        delayed = dq_name(queue_name)
        self.delay_queues.add(delayed)
        self.emit_after("declare_delay_queue", delayed)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        queue_name = message.queue_name
        eta = 0
        if delay is not None:
            queue_name = dq_name(queue_name)
            eta = current_millis() + delay
            message = message.copy(queue_name=queue_name, options={"eta": eta})
        # Like the Redis broker: every enqueue gets its own storage id (a retry is a new row).
        rid = str(uuid.uuid4())
        message = message.copy(options={"redis_message_id": rid})
        self.emit_before("enqueue", message, delay)
        # The worker moves due delayed messages itself, so the stored eta is only a hint.
        self.store.put(queue_name, rid, message.encode(), eta=0)
        self.emit_after("enqueue", message, delay)
        return message

    def get_declared_queues(self) -> set[str]:
        return set(self.queues)

    def get_declared_delay_queues(self) -> set[str]:
        return set(self.delay_queues)

    def flush(self, queue_name: str) -> None:
        for name in (queue_name, dq_name(queue_name)):
            self.store.purge(name)

    def flush_all(self) -> None:
        for name in list(self.queues):
            self.flush(name)

    def join(self, queue_name: str, *, timeout: int | None = None, **_: Any) -> None:
        deadline = timeout and time.monotonic() + timeout / 1000
        while True:
            pending = (
                self.store.count(queue_name)
                + self.store.count(queue_name, "taken")
                + self.store.count(dq_name(queue_name))
                + self.store.count(dq_name(queue_name), "taken")
            )
            if pending == 0:
                return
            if deadline and time.monotonic() > deadline:
                from dramatiq.errors import QueueJoinTimeout

                raise QueueJoinTimeout(queue_name)
            time.sleep(0.05)


class _SqliteConsumer(Consumer):
    def __init__(self, broker: SqliteBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.store = broker.store
        self.queue_name = queue_name
        self.timeout = timeout / 1000
        self.slots = threading.Semaphore(prefetch)

    def __next__(self) -> MessageProxy | None:
        if not self.slots.acquire(timeout=self.timeout):
            return None
        deadline = time.monotonic() + self.timeout
        while True:
            got = self.store.take(self.queue_name, current_millis())
            if got is not None:
                _rid, data = got
                return MessageProxy(Message.decode(data))
            if time.monotonic() >= deadline:
                self.slots.release()
                return None
            time.sleep(min(self.broker.poll_interval, max(0.0, deadline - time.monotonic())))

    def _rid(self, message: MessageProxy) -> str:
        return str(message.options["redis_message_id"])

    def ack(self, message: MessageProxy) -> None:
        self.store.ack(self._rid(message))
        self.slots.release()

    def nack(self, message: MessageProxy) -> None:
        self.store.nack(self._rid(message))
        self.slots.release()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        for message in messages:
            self.store.requeue(self._rid(message))

    def close(self) -> None:
        self.store.close()
