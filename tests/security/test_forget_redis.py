"""Issue 13.5 (rest): ``forget --email`` also takes the person's waiting messages out of
Dramatiq's Redis queue (ready, delayed and Dramatiq-dead), and leaves the one a worker holds,
saying so. Real Redis; the messages are put there by Dramatiq's own ``RedisBroker``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from calendly_brevo.lifecycle import forget
from calendly_brevo.queue_erasure import RedisWaiting
from calendly_brevo.queueing import ACTOR_NAME, NAMESPACE, QUEUE_NAME, RedisEnqueuer, queue_key
from cli.main import cli
from tests import payloads
from tests.worker.test_pipeline import make_pipeline

KEY = queue_key()
PERSON = "José@example.com"


def _body(email: str, n: int) -> str:
    doc = payloads.invitee_created(email=email, invitee_uri=payloads.invitee_uri(f"E{n}", f"I{n}"))
    return payloads.body(doc).decode()


def _message(email: str, n: int) -> Message[object]:
    return Message(
        queue_name=QUEUE_NAME,
        actor_name=ACTOR_NAME,
        args=(_body(email, n), 1.0, "webhook"),
        kwargs={},
        options={},
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    made = RedisBroker(url=redis_url, namespace=NAMESPACE, middleware=[])
    made.declare_queue(QUEUE_NAME)
    yield made
    made.close()


def _fetch_one(broker: RedisBroker) -> tuple[object, object]:
    consumer = broker.consume(QUEUE_NAME, prefetch=1, timeout=100)
    for _ in range(50):
        message = next(consumer)
        if message is not None:
            return consumer, message
    raise AssertionError("Dramatiq fetched nothing")


def _stage(client: redis.Redis, broker: RedisBroker) -> tuple[object, object]:
    """Dead, held, ready, delayed messages of the person, and others' messages beside them."""
    enqueuer = RedisEnqueuer(client)
    enqueuer.enqueue(_body(PERSON, 1), received_at=1.0, source="webhook")
    dead_consumer, dead = _fetch_one(broker)
    dead_consumer.nack(dead)  # type: ignore[attr-defined]  # Dramatiq's dead-letter set
    enqueuer.enqueue(_body(PERSON, 2), received_at=1.0, source="webhook")
    held_consumer, held = _fetch_one(broker)  # a worker holds it now
    enqueuer.enqueue(_body("jose@example.com", 3), received_at=1.0, source="webhook")
    enqueuer.enqueue(_body(PERSON.upper(), 4), received_at=1.0, source="backfill")
    enqueuer.enqueue(_body("other@example.com", 5), received_at=1.0, source="webhook")
    client.hset(f"{KEY}.msgs", "garbage", b"\xff not a message")
    client.rpush(KEY, "garbage")
    broker.enqueue(_message(PERSON, 6), delay=3_600_000)  # a retry waiting out its backoff
    broker.enqueue(_message("other@example.com", 7), delay=3_600_000)
    assert client.llen(KEY) == 4 and client.llen(f"{KEY}.DQ") == 2
    assert client.zcard(f"{KEY}.XQ") == 1
    return held_consumer, held


def _emails_left(client: redis.Redis, key: str) -> list[str]:
    import json

    left = []
    for data in client.hvals(key):
        try:
            body = json.loads(json.loads(data)["args"][0])
        except (ValueError, KeyError):
            left.append("?")
            continue
        left.append(body["payload"]["email"])
    return sorted(left)


def test_forget_removes_the_persons_waiting_redis_messages_and_leaves_the_held_one(
    tmp_path: Path, client: redis.Redis, broker: RedisBroker
) -> None:
    _pipeline, _brevo, services = make_pipeline(tmp_path)
    held_consumer, held = _stage(client, broker)

    result = forget(services.sessions, "Jose\u0301@EXAMPLE.com", RedisWaiting(client))

    assert (result.queued, result.held) == (3, 1)  # ready, delayed, Dramatiq-dead; held
    assert client.llen(KEY) == 3  # jose@ (no accent), other@ and the garbage stay
    assert _emails_left(client, f"{KEY}.DQ.msgs") == ["other@example.com"]
    assert client.llen(f"{KEY}.DQ") == 1
    assert client.zcard(f"{KEY}.XQ") == 0 and client.hlen(f"{KEY}.XQ.msgs") == 0
    # The held message's body stays until its worker acks it; then only others' remain.
    assert "José@example.com" in _emails_left(client, f"{KEY}.msgs")
    held_consumer.ack(held)  # type: ignore[attr-defined]
    assert _emails_left(client, f"{KEY}.msgs") == ["?", "jose@example.com", "other@example.com"]
    services.close()


def test_forget_on_the_command_line_says_what_a_worker_still_holds(
    tmp_path: Path, redis_url: str, client: redis.Redis, broker: RedisBroker
) -> None:
    _pipeline, _brevo, services = make_pipeline(tmp_path)
    _stage(client, broker)
    env = {
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": "cli-signing-key-Vb7Nq2Lw9Xr4Tz6Hm1Pk",
        "REDIS_URL": redis_url,
        "DATABASE_URL": services.settings.database_url,
        "BREVO_DRY_RUN": "true",
        "CONNECTOR_CONFIG": "",
    }
    result = CliRunner().invoke(cli, ["forget", "--email", PERSON, "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 queued message(s)" in result.stdout
    assert "1 message(s)" in result.stderr and "left to finish" in result.stderr
    assert client.llen(KEY) == 3 and client.llen(f"{KEY}.DQ") == 1
    services.close()
