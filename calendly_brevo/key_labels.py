"""How a webhook signing key is named without revealing it.

Which key verified a delivery is stored with it (``calendly-brevo trace`` shows it) as a
:func:`key_label`: the key's place in the config and a fingerprint, never the key itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from calendly_brevo.config import WebhookSettings


def fingerprint(key: str) -> str:
    """The first 8 hex characters of the key's SHA-256: names a key without revealing it
    (``printf %s "$KEY" | sha256sum | cut -c1-8`` gives the same)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def config_key_names(webhook: WebhookSettings) -> dict[str, str]:
    """Each configured key → its place in the config (``signing_key``,
    ``previous_signing_keys.0`` …)."""
    names: dict[str, str] = {}
    if webhook.signing_key and webhook.signing_key.get_secret_value():
        names[webhook.signing_key.get_secret_value()] = "signing_key"
    for i, old in enumerate(webhook.previous_signing_keys):
        names.setdefault(old.get_secret_value(), f"previous_signing_keys.{i}")
    return names


def key_label(key: str, names: Mapping[str, str]) -> str:
    """``<place>:<fingerprint>``: ``signing_key:1a2b3c4d``; a key not in ``names`` is one
    ``webhooks install`` stored in the database (``stored:…``)."""
    return f"{names.get(key, 'stored')}:{fingerprint(key)}"
