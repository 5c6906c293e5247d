"""Erase one person's messages from the queue (``forget --email``), in either backend.

Dramatiq's ``RedisBroker`` keeps, per queue ``<ns>:<q>`` (see :mod:`calendly_brevo.queueing`):

================  =====================================================================
``<ns>:<q>``       list of ids of ready messages; ``<ns>:<q>.msgs`` holds their bodies
``<ns>:<q>.DQ``    list of ids of delayed ones (retries waiting out a backoff); ``.DQ.msgs``
``<ns>:<q>.XQ``    sorted set of ids Dramatiq dead-lettered; ``.XQ.msgs``
acks               ``<ns>:__acks__.<worker>.<q>``: ids a worker fetched and holds now (the
                   body stays in ``.msgs`` until the ack)
================  =====================================================================

:class:`RedisWaiting` reads every body (``HSCAN``), picks the ones ``match`` accepts, then
removes each with a Lua script, atomic against Dramatiq's own dispatch script: the id leaves the
list (``LREM``) or set (``ZREM``) and only if it was still there does its body go (``HDEL``). An
id no longer in its list was fetched by a worker in the meantime: it is *held*, left alone (a
worker that holds a message must be able to finish and ack it; its effects are then the
person's Brevo contact, Brevo's to delete), and counted so ``forget`` can say so. Weak spot,
said plainly: a message enqueued after the scan is not seen; run ``forget`` again once the
receiver no longer takes the person's webhooks. Each ``LREM`` walks the list, so the cost is the
queue length times the person's messages: fine for one person, not for bulk erasure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from calendly_brevo.errors import QueueUnavailable
from calendly_brevo.queueing import NAMESPACE, QUEUE_NAME, SqliteQueue, queue_key


@dataclass(frozen=True)
class Erased:
    """``removed``: waiting messages deleted; ``held``: matching ones a worker holds (kept)."""

    removed: int = 0
    held: int = 0


class WaitingMessages(Protocol):
    def erase(self, match: Callable[[bytes], bool]) -> Erased: ...


#: KEYS[1] the id list (or sorted set), KEYS[2] the bodies hash; ARGV[1] "list" or "zset",
#: ARGV[2..] ids. Returns how many were removed; an id not in KEYS[1] is left alone.
ERASE_LUA = """
local removed = 0
for i = 2, #ARGV do
    local id = ARGV[i]
    local gone
    if ARGV[1] == "zset" then
        gone = redis.call("zrem", KEYS[1], id)
    else
        gone = redis.call("lrem", KEYS[1], 0, id)
    end
    if gone > 0 then
        redis.call("hdel", KEYS[2], id)
        removed = removed + 1
    end
end
return removed
"""

BATCH = 500


class RedisWaiting:
    """The person's messages in Dramatiq's Redis queue (see the module docstring)."""

    def __init__(
        self, client: redis.Redis, namespace: str = NAMESPACE, queue: str = QUEUE_NAME
    ) -> None:
        self.client = client
        self.key = queue_key(namespace, queue)
        self._erase = client.register_script(ERASE_LUA)

    def _matching(self, bodies: str, match: Callable[[bytes], bool]) -> list[bytes]:
        found: list[bytes] = []
        for message_id, data in self.client.hscan_iter(bodies, count=BATCH):
            if isinstance(data, bytes) and match(data):
                found.append(message_id)
        return found

    def erase(self, match: Callable[[bytes], bool]) -> Erased:
        removed = held = 0
        places = (
            (self.key, "list", True),
            (f"{self.key}.DQ", "list", True),
            (f"{self.key}.XQ", "zset", False),  # dead: nobody holds them
        )
        try:
            for ids_key, kind, can_be_held in places:
                ids = self._matching(f"{ids_key}.msgs", match)
                gone = 0
                for start in range(0, len(ids), BATCH):
                    chunk = ids[start : start + BATCH]
                    args: list[bytes | str] = [kind, *chunk]
                    gone += int(self._erase(keys=[ids_key, f"{ids_key}.msgs"], args=args))
                removed += gone
                if can_be_held:
                    held += len(ids) - gone
        except (redis.RedisError, OSError) as exc:
            raise QueueUnavailable(f"redis: {type(exc).__name__}") from exc
        return Erased(removed=removed, held=held)


class SqliteWaiting:
    """The person's messages in the embedded SQLite queue: waiting rows go in one statement
    each; rows a worker has taken stay and are counted."""

    def __init__(self, queue: SqliteQueue) -> None:
        self.queue = queue

    def erase(self, match: Callable[[bytes], bool]) -> Erased:
        removed = self.queue.remove_ready(match)
        return Erased(removed=removed, held=self.queue.count_taken(match))
