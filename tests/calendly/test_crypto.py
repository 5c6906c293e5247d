from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from calendly_brevo.crypto import DecryptionError, SecretBox
from calendly_brevo.encryption_key import load_box
from calendly_brevo.errors import ConfigError
from tests.conftest import make_settings


def test_embedded_mode_without_a_key_generates_one_with_0600_permissions(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    box = load_box(settings)
    path = settings.storage.data_dir / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = box.encrypt("refresh-token")
    assert load_box(settings).decrypt(token) == "refresh-token"  # the same key next time


def test_production_mode_without_a_key_is_a_config_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, REDIS_URL="redis://127.0.0.1:6379/15")
    with pytest.raises(ConfigError, match="CONNECTOR_ENCRYPTION_KEY"):
        load_box(settings)


def test_comma_separated_keys_rotate_the_first_encrypts_all_decrypt(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = load_box(make_settings(tmp_path, CONNECTOR_ENCRYPTION_KEY=old)).encrypt("secret")
    rotated_box = load_box(make_settings(tmp_path, CONNECTOR_ENCRYPTION_KEY=f"{new}, {old}"))
    assert rotated_box.decrypt(token) == "secret"
    rotated = rotated_box.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "secret"
    with pytest.raises(DecryptionError):
        SecretBox([new]).decrypt(token)


def test_a_bad_key_names_the_setting_and_the_repr_hides_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"security\.encryption_key"):
        load_box(make_settings(tmp_path, CONNECTOR_ENCRYPTION_KEY="not-a-key"))
    key = Fernet.generate_key().decode()
    assert key not in repr(SecretBox([key]))
