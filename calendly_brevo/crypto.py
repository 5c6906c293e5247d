"""Encryption at rest for OAuth tokens and webhook signing keys (Fernet / MultiFernet).

``security.encryption_key`` (``CONNECTOR_ENCRYPTION_KEY``) holds one or more Fernet keys,
comma-separated. The first one encrypts; all of them decrypt, so a rotation is: put the new key
first, keep the old one after it, run ``calendly-brevo keys rotate`` (or just let
them be re-encrypted on their next write), then drop the old key.

In the embedded mode (no Redis) with no key configured, a key is generated once into
``<data_dir>/secret.key`` (mode 0600) and a warning says so: a single machine keeps working
without set-up, but that file must be backed up with the database (losing it makes the stored
tokens unreadable: reconnect via OAuth and re-install the webhook). In the production mode a
missing key is a configuration error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from calendly_brevo.config import Settings
from calendly_brevo.errors import ConfigError
from calendly_brevo.logs import get_logger
from calendly_brevo.private_files import private_dir

log = get_logger("calendly_brevo.crypto")

KEY_FILE = "secret.key"
KEY_PATH = "security.encryption_key"
KEY_FIX = (
    "CONNECTOR_ENCRYPTION_KEY=<key>[,<old key>] with keys from "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class DecryptionError(ConfigError):
    """A stored secret cannot be decrypted with any configured key."""

    def __init__(self) -> None:
        super().__init__(
            KEY_PATH,
            "a stored secret cannot be decrypted with any configured key "
            "(was the key changed without keeping the old one?)",
            "the key the secret was written with, after the new key: new,old",
        )


def generate_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts and decrypts short secrets. Its repr never shows a key."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError(KEY_PATH, "no encryption key", KEY_FIX)
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                KEY_PATH, "not a Fernet key (32 url-safe base64-encoded bytes)", KEY_FIX
            ) from exc

    def __repr__(self) -> str:
        return "SecretBox(keys=**********)"

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes, *, ttl: int | None = None) -> str:
        """Decrypt; with ``ttl`` (seconds) a token older than that is refused too."""
        try:
            if ttl is None:
                return self._fernet.decrypt(token).decode()
            return self._fernet.decrypt(token, ttl=ttl).decode()
        except InvalidToken as exc:
            raise DecryptionError() from exc

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` with the first (newest) key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise DecryptionError() from exc


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
