"""Rate limiting for Brevo calls: one shared reservation bucket per limit family."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from calendly_brevo.config import BrevoSettings, Bucket
from calendly_brevo.ratelimit.bucket import (
    DEFAULT_KEY_PREFIX,
    FAMILIES,
    Backend,
    FamilyState,
    MemoryBackend,
    RedisBackend,
    TokenBucket,
)


def buckets_from_settings(settings: BrevoSettings) -> Mapping[str, Bucket]:
    """Rate and burst of each family: the plan preset, or the ``rate_limits`` override."""
    return {family: settings.bucket(family) for family in FAMILIES}


def make_token_bucket(
    settings: BrevoSettings,
    redis_client: redis.Redis | None = None,
    *,
    extra: Mapping[str, Bucket] | None = None,
) -> TokenBucket:
    """Redis-backed when a client is given (shared by every worker), else in-process; with
    ``extra`` buckets beside the families (the worker's share for in-doubt lookups)."""
    backend: Backend = MemoryBackend() if redis_client is None else RedisBackend(redis_client)
    buckets = {**buckets_from_settings(settings), **(extra or {})}
    return TokenBucket(backend, buckets, margin=settings.rate_margin)


__all__ = [
    "DEFAULT_KEY_PREFIX",
    "FAMILIES",
    "Backend",
    "FamilyState",
    "MemoryBackend",
    "RedisBackend",
    "TokenBucket",
    "buckets_from_settings",
    "make_token_bucket",
]
