"""Encryption at rest for OAuth tokens and webhook signing keys (Fernet / MultiFernet).

``security.encryption_key`` (``CONNECTOR_ENCRYPTION_KEY``) holds one or more Fernet keys,
comma-separated. The first one encrypts; all of them decrypt, so a rotation is: put the new key
first, keep the old one after it, run ``calendly-brevo keys rotate`` (or just let
them be re-encrypted on their next write), then drop the old key.

Where the keys come from (the setting, or the embedded mode's generated key file) is
:mod:`calendly_brevo.encryption_key`.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from calendly_brevo.errors import ConfigError

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
