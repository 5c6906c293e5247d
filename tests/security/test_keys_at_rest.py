"""Keys at rest: private files, and ``keys rotate`` lets an old encryption key be dropped."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.subscription_store import active_signing_keys, store_signing_key
from calendly_brevo.calendly.tokens import OAuthTokenStore
from calendly_brevo.config import load_settings
from calendly_brevo.crypto import DecryptionError
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.encryption_key import load_box
from calendly_brevo.queueing import SqliteQueue
from cli.main import cli

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
SIGNING = "whsec-rotate-Qm8vR2xT5nW9pL3kZ7bYc4Hd"


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_for(data: Path, keys: str | None = None) -> dict[str, str]:
    env = {"CONNECTOR_DATA_DIR": str(data), "REDIS_URL": "", "DATABASE_URL": ""}
    if keys:
        env["CONNECTOR_ENCRYPTION_KEY"] = keys
    return env | {"CONNECTOR_CONFIG": ""}


def test_the_embedded_database_queue_and_key_files_are_private(
    tmp_path: Path, loose_umask: None
) -> None:
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["migrate"], env=env_for(data), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert mode(data) == 0o700
    assert mode(data / "calendly-brevo.db") == 0o600
    load_box(load_settings(None, env=env_for(data)))
    assert mode(data / "secret.key") == 0o600
    SqliteQueue(data / "queue.db").close()
    assert mode(data / "queue.db") == 0o600
    assert all(mode(p) == 0o600 for p in data.iterdir() if p.is_file())


def _store_secrets(data: Path) -> None:
    services = Services(load_settings(None, env=env_for(data, OLD)))
    upgrade(services.engine)
    box = load_box(services.settings)
    OAuthTokenStore(services.sessions, box).save(
        {"access_token": "at-secret", "refresh_token": "rt-secret", "expires_in": 3600}
    )
    store_signing_key(services.sessions, box, SIGNING, "https://api.calendly.com/webhooks/1")
    services.close()


def test_keys_rotate_re_encrypts_every_stored_secret_so_the_old_key_can_go(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _store_secrets(data)
    result = CliRunner().invoke(
        cli, ["keys", "rotate", "--json"], env=env_for(data, f"{NEW},{OLD}"), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"oauth_tokens": 1, "signing_keys": 1}
    assert OLD not in result.output and NEW not in result.output

    services = Services(load_settings(None, env=env_for(data, NEW)))  # the old key is gone
    box = load_box(services.settings)
    token = OAuthTokenStore(services.sessions, box).load()
    assert token is not None
    assert (token.access_token, token.refresh_token) == ("at-secret", "rt-secret")
    assert active_signing_keys(services.sessions, box) == [SIGNING]
    services.close()


def test_without_rotate_dropping_the_old_key_makes_the_secrets_unreadable(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _store_secrets(data)
    services = Services(load_settings(None, env=env_for(data, NEW)))
    with pytest.raises(DecryptionError):
        OAuthTokenStore(services.sessions, load_box(services.settings)).load()
    services.close()


def test_rotate_with_a_key_that_reads_nothing_fails_in_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _store_secrets(data)
    result = CliRunner().invoke(cli, ["keys", "rotate"], env=env_for(data, NEW))
    assert result.exit_code == 2 and "security.encryption_key" in result.output
    assert "Traceback" not in result.output
    services = Services(load_settings(None, env=env_for(data, OLD)))
    token = OAuthTokenStore(services.sessions, load_box(services.settings)).load()
    assert token is not None and token.access_token == "at-secret"
    services.close()


def test_tightening_an_open_database_keeps_its_locks_so_it_cannot_be_corrupted(
    tmp_path: Path,
) -> None:
    # A second SqliteQueue on the same file in one process (the receiver's and the worker's, in
    # `run`) tightens the file's mode. Closing any descriptor of a file drops every POSIX lock
    # the process holds on it: had it opened the file, the shared lock each WAL connection
    # holds would be gone, and another process closing its connection would take itself for
    # the last one, checkpoint and delete the WAL under us ("database disk image is
    # malformed" in the embedded queue). A live connection must keep a switch out of WAL out.
    path = tmp_path / "queue.db"
    first = SqliteQueue(path)
    first.count("calendly")
    try:
        SqliteQueue(path)
        probe = (
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
            "try:\n"
            "    print(c.execute('PRAGMA journal_mode=DELETE').fetchone()[0])\n"
            "except sqlite3.OperationalError as e:\n"
            "    print(e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe, str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    finally:
        first.close()
    assert out == "database is locked"
