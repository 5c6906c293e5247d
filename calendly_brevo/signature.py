"""Calendly webhook signatures: ``Calendly-Webhook-Signature: t=<unix>,v1=<hex>``.

``v1`` is HMAC-SHA256 over ``f"{t}.".encode() + raw_body`` keyed with the signing key's UTF-8
bytes, in lower-case hex. :func:`verify` is pure: it takes the keys, the raw body, the header and
the current time, and either returns the timestamp or raises a :class:`SignatureError` subclass.

- Every ``v1`` in the header is tried against every key (several keys: rotation; several ``v1``:
  Calendly may send more than one), always with :func:`hmac.compare_digest`.
- A timestamp older than ``tolerance`` seconds is refused (replay of a captured request), and so
  is one more than ``tolerance`` in the future (clock skew beyond that is a misconfiguration).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from calendly_brevo.errors import (
    InvalidSignature,
    MalformedSignature,
    MissingSignature,
    StaleSignature,
)

HEADER = "Calendly-Webhook-Signature"
DEFAULT_TOLERANCE = 180
MAX_HEADER_LENGTH = 2048
_HEX = frozenset("0123456789abcdefABCDEF")


def sign(key: str, body: bytes, timestamp: int) -> str:
    """The header value Calendly would send for ``body`` at ``timestamp``."""
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_header(header: str | None) -> tuple[int, list[str]]:
    """Split ``t=…,v1=…[,v1=…]`` into the timestamp and the candidate signatures."""
    if header is None or not header.strip():
        raise MissingSignature("missing Calendly-Webhook-Signature header")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedSignature("signature header too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise MalformedSignature("signature header parts must be key=value")
        key, value = key.strip(), value.strip()
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise MalformedSignature("signature timestamp t must be one unix time")
            if len(value) > 12:
                raise MalformedSignature("signature timestamp out of range")
            timestamp = int(value)
        elif key == "v1":
            if len(value) != 64 or not set(value) <= _HEX:
                raise MalformedSignature("v1 must be 64 hex characters")
            signatures.append(value.lower())
        # Unknown schemes (v0, future versions) are ignored, as Stripe-style parsers do.
    if timestamp is None:
        raise MalformedSignature("signature header has no t=")
    if not signatures:
        raise MalformedSignature("signature header has no v1=")
    return timestamp, signatures


def verify(
    keys: Sequence[str],
    body: bytes,
    header: str | None,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> int:
    """Return the signed timestamp if ``header`` proves ``body`` came from Calendly."""
    return verify_key(keys, body, header, now, tolerance)[0]


def verify_key(
    keys: Sequence[str],
    body: bytes,
    header: str | None,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> tuple[int, int]:
    """:func:`verify`, also saying which key verified: ``(timestamp, index in keys)``, the first
    key that matched (during a rotation: whether Calendly still signs with the old one)."""
    timestamp, signatures = parse_header(header)
    if abs(now - timestamp) > tolerance:
        raise StaleSignature(f"signature timestamp outside the {tolerance}s tolerance")
    prefix = f"{timestamp}.".encode()
    matched = -1
    for index, key in enumerate(keys):
        expected = hmac.new(key.encode(), prefix + body, hashlib.sha256).hexdigest()
        hit = False
        for candidate in signatures:
            # No early exit: every comparison runs, so timing says nothing about which matched.
            hit |= hmac.compare_digest(expected, candidate)
        if hit and matched < 0:
            matched = index
    if matched < 0:
        raise InvalidSignature("signature does not match")
    return timestamp, matched
