"""The local development signing key of the embedded dry-run demo.

With nothing configured, the embedded dry run accepts webhooks signed with a key generated once
into ``<data_dir>/dev-signing-key`` (mode 0600), so ``calendly-brevo simulate`` works out of the
box (:func:`calendly_brevo.keyring.build_keyring`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from calendly_brevo.config import Settings
from calendly_brevo.private_files import private_dir


def dev_key_path(settings: Settings) -> Path:
    return settings.storage.data_dir / "dev-signing-key"


def ensure_dev_key(settings: Settings) -> str:
    path = dev_key_path(settings)
    if path.exists():
        return path.read_text().strip()
    private_dir(path.parent)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
