"""The shared bucket as background work sees it: spare tokens only, never a wait.

:class:`SpareBucket` is a :class:`~calendly_brevo.ratelimit.bucket.TokenBucket` on the same
backend and keys as the workers' one, whose :meth:`~SpareBucket.acquire` takes a token only
through :meth:`~calendly_brevo.ratelimit.bucket.TokenBucket.try_spare`: one free now, with more
than ``share`` of the family's burst left free for live events. Otherwise it raises
:class:`NoSpareCapacity` at once, and the background work (``sync.auto_resync``) stops and
comes back later. Handed to a Brevo client, every call that client makes is low priority.

The price of the reserve: background work gets at most ``burst - keep`` tokens per window, so
about half the family's rate with the default share, and only while live events leave them.
"""

from __future__ import annotations

from calendly_brevo.errors import RateLimited
from calendly_brevo.ratelimit.bucket import US, TokenBucket

#: Share of each family's burst kept free for live events.
DEFAULT_SHARE = 0.5


class NoSpareCapacity(RateLimited):
    """No token is spare now: live events come first; try again later."""


class SpareBucket(TokenBucket):
    def __init__(self, bucket: TokenBucket, share: float = DEFAULT_SHARE) -> None:
        super().__init__(
            bucket.backend, bucket.buckets, key_prefix=bucket.key, margin=bucket.margin
        )
        self.share = share

    def keep(self, family: str) -> int:
        """Tokens of ``family`` that stay free for live events (none with a burst of 1: then
        background work takes the one token only when it is free and nobody waits for it)."""
        return int(self.buckets[family].burst * self.share)

    def acquire(self, family: str, max_wait: float) -> float:
        """A spare token now, or :class:`NoSpareCapacity`; never waits (``max_wait`` unused)."""
        if not self.try_spare(family, self.keep(family)):
            raise NoSpareCapacity(family, self._schedule(family).spacing_us / US)
        return 0.0
