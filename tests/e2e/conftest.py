"""Fixtures for the end-to-end tests that run the production shape."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import REDIS_BASE


@pytest.fixture
def own_redis_url(redis_url: str) -> Iterator[str]:
    """Redis database 14 (``TEST_E2E_REDIS_DB``), flushed before and after.

    ``redis_url``'s database 15 is flushed by every other integration test; when two suites run
    side by side (several engineers, one machine), a flush from the other one silently drops
    this test's queue mid-run. ``redis_url`` still decides skip (locally) or fail (in CI).
    """
    url = f"{REDIS_BASE}/{os.environ.get('TEST_E2E_REDIS_DB', '14')}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()
