"""The :class:`~calendly_brevo.crypto.SecretBox` of a deployment: where its keys come from.

``security.encryption_key`` (``CONNECTOR_ENCRYPTION_KEY``) when it is set: one or more keys,
comma-separated (:mod:`calendly_brevo.crypto` says how they rotate).

In the embedded mode (no Redis) with no key configured, a key is generated once into
``<data_dir>/secret.key`` (mode 0600) and a warning says so: a single machine keeps working
without set-up, but that file must be backed up with the database (losing it makes the stored
tokens unreadable: reconnect via OAuth and re-install the webhook). In the production mode a
missing key is a configuration error.
"""

from __future__ import annotations

import os
from pathlib import Path

from calendly_brevo.config import Settings
from calendly_brevo.crypto import KEY_FIX, KEY_PATH, SecretBox, generate_key
from calendly_brevo.errors import ConfigError
from calendly_brevo.logs import get_logger
from calendly_brevo.private_files import private_dir

log = get_logger("calendly_brevo.crypto")

KEY_FILE = "secret.key"


def split_keys(raw: str) -> list[str]:
    return [k.strip() for k in raw.split(",") if k.strip()]


def _key_file(data_dir: Path) -> str:
    """Read ``<data_dir>/secret.key``, creating it (0600, exclusive) when absent."""
    path = data_dir / KEY_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    private_dir(data_dir)
    key = generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    log.warning(
        "encryption_key_generated",
        path=str(path),
        hint="no CONNECTOR_ENCRYPTION_KEY set: generated one for the embedded mode; "
        "back this file up with the database, or set CONNECTOR_ENCRYPTION_KEY",
    )
    return key


def existing_box(settings: Settings) -> SecretBox | None:
    """:func:`load_box` for read-only commands (``doctor``): ``None`` instead of generating the
    embedded key file. Without that file nothing can have been stored encrypted."""
    secret = settings.security.encryption_key
    configured = bool(secret and secret.get_secret_value())
    if settings.embedded and not configured and not (settings.storage.data_dir / KEY_FILE).exists():
        return None
    return load_box(settings)


def load_box(settings: Settings) -> SecretBox:
    """The box for these settings (see the module docstring for where the key comes from)."""
    secret = settings.security.encryption_key
    raw = secret.get_secret_value() if secret is not None else ""
    if raw:
        return SecretBox(split_keys(raw))
    if settings.embedded:
        return SecretBox([_key_file(settings.storage.data_dir)])
    raise ConfigError(KEY_PATH, "is required when Redis/Postgres are used", KEY_FIX)
