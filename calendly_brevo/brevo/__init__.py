"""The Brevo API v3 client the worker and the CLI use."""

from __future__ import annotations

from calendly_brevo.brevo.client import BrevoClient, family_of, make_http_client, redact
from calendly_brevo.brevo.models import (
    BrevoErrorBody,
    ListChange,
    RateLimitHeaders,
    UpsertResult,
)

__all__ = [
    "BrevoClient",
    "BrevoErrorBody",
    "ListChange",
    "RateLimitHeaders",
    "UpsertResult",
    "family_of",
    "make_http_client",
    "redact",
]
