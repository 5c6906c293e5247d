"""Refuse placeholder and weak secrets before anything starts.

The signing key(s), the admin token and the encryption key(s) must each be at least
:data:`MIN_LENGTH` characters, not a known placeholder (the values shipped in
``deploy/k8s/base/secret.example.yaml``, ``config.example.yaml`` and the README) and not a
run of a few repeated characters. Only the embedded dry run (no Redis, no Brevo key, a SQLite
database: a demo on one machine that sends nothing) is exempt. A process given only the
secrets it reads (a Kubernetes CronJob or migration: Postgres but no Redis or Brevo key) is
not a demo and is checked. An error names the key and the fix, never the value.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import SecretStr

from calendly_brevo.errors import ConfigError

if TYPE_CHECKING:
    from calendly_brevo.config import Settings

MIN_LENGTH = 32
#: A random secret of 32+ characters has far more distinct characters than this.
MIN_DISTINCT = 8

#: Values shipped in the repository's examples, compared case-insensitively.
KNOWN_PLACEHOLDERS = frozenset(
    {
        "your-calendly-webhook-signing-key",
        "your-calendly-personal-access-token",
        "your-brevo-api-key",
        "your-admin-token",
        "your-fernet-key",
        "changeme",
        "change-me",
        "change_me",
        "password",
        "secret",
        "...",
    }
)
_PLACEHOLDER_SHAPE = re.compile(
    r"^(your[_-].*|.*change[_-]?me.*|x{3,}|todo|placeholder|example.*|<.*>|\$\{.*\}|\.\.\.)$",
    re.IGNORECASE,
)

_FIXES = {
    "connectors.calendly.webhook.signing_key": (
        "CALENDLY_WEBHOOK_SIGNING_KEY",
        "the key printed by `calendly-brevo webhooks install`, or "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
    ),
    "security.admin_token": (
        "CONNECTOR_ADMIN_TOKEN",
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
    ),
    "security.encryption_key": (
        "CONNECTOR_ENCRYPTION_KEY",
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'",
    ),
}


def weakness(value: str) -> str | None:
    """Why ``value`` is not an acceptable secret, or None. The reason never quotes the value."""
    text = value.strip()
    if text.lower() in KNOWN_PLACEHOLDERS or _PLACEHOLDER_SHAPE.match(text):
        return "still holds a placeholder value"
    if len(text) < MIN_LENGTH:
        return f"is too short ({len(text)} characters; at least {MIN_LENGTH} are required)"
    if len(set(text)) < MIN_DISTINCT:
        return "is not random (too few distinct characters)"
    return None


def _candidates(settings: Settings) -> list[tuple[str, str]]:
    """(dotted path, value) of every secret the rules cover that is set."""
    webhook = settings.calendly.webhook
    found: list[tuple[str, SecretStr | None]] = [
        ("connectors.calendly.webhook.signing_key", webhook.signing_key),
        ("security.admin_token", settings.security.admin_token),
    ]
    found += [
        (f"connectors.calendly.webhook.previous_signing_keys.{i}", old)
        for i, old in enumerate(webhook.previous_signing_keys)
    ]
    pairs = [(path, s.get_secret_value()) for path, s in found if s is not None]
    enc = settings.security.encryption_key
    if enc is not None:
        keys = [k.strip() for k in enc.get_secret_value().split(",") if k.strip()]
        pairs += [("security.encryption_key", k) for k in keys]
    return [(path, value) for path, value in pairs if value]


def check_secrets(settings: Settings) -> None:
    """Raise :class:`ConfigError` naming the first weak secret (see the module docstring)."""
    local = settings.database_url.startswith("sqlite")
    if settings.embedded and settings.dry_run and local:
        return
    for path, value in _candidates(settings):
        reason = weakness(value)
        if reason is None:
            continue
        env, how = _FIXES.get(path, _FIXES["connectors.calendly.webhook.signing_key"])
        raise ConfigError(path, reason, f"set {env} to a random secret, e.g. {how}")
