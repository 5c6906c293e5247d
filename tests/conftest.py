"""Shared fixtures. Integration fixtures use the real Postgres and Redis on 127.0.0.1: they skip
when a service is absent on a developer machine and fail when it is absent in CI (``CI`` set)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calendly_brevo.config import Settings, load_settings

IN_CI = bool(os.environ.get("CI"))
PG_BASE = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
SIGNING_KEY = "test-signing-key-5mEzn9C-I28UtwOjZJtFoob0sAAFZ95GbZkqj4y3i0I"


def _absent(what: str, why: Exception) -> None:
    message = f"{what} is not reachable ({type(why).__name__}: {why})"
    if IN_CI:
        pytest.fail(message + " — CI must provide it")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the test database; the URL selects it with search_path."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        _absent("Postgres", exc)
    url = PG_BASE.replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database (1-11, picked at random so parallel runs rarely meet), flushed before
    and after. 12 and 13 belong to the benchmarks and the bucket test."""
    import random

    import redis

    url = f"{REDIS_BASE}/{random.randint(1, 11)}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    except (redis.ConnectionError, OSError) as exc:
        _absent("Redis", exc)
    yield url
    client.flushdb()
    client.close()


def make_settings(tmp_path: Path, **env: Any) -> Settings:
    base = {
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }
    base.update({k: str(v) for k, v in env.items() if v is not None})
    return load_settings(None, env=base)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)
