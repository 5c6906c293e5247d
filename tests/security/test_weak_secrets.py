"""Placeholder and weak secrets are refused at start, naming the key and never the value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from calendly_brevo.config import load_settings
from calendly_brevo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
STRONG_SIGNING = "sig-Qm8vR2xT5nW9pL3kZ7bYc4Hd6Jw3Xc1A"
STRONG_ADMIN = "adm-Vb7Nq2Lw9Xr4Tz6Hm1Pk8Sd3Fg5Jh0Q"
PRODUCTION = {
    "REDIS_URL": "redis://127.0.0.1:6382/0",
    "BREVO_API_KEY": "xkeysib-production-looking-key",
    "CALENDLY_WEBHOOK_SIGNING_KEY": STRONG_SIGNING,
    "CONNECTOR_ADMIN_TOKEN": STRONG_ADMIN,
    "CONNECTOR_ENCRYPTION_KEY": Fernet.generate_key().decode(),
}
ENV_PATH = {
    "CALENDLY_WEBHOOK_SIGNING_KEY": "connectors.calendly.webhook.signing_key",
    "CONNECTOR_ADMIN_TOKEN": "security.admin_token",
    "CONNECTOR_ENCRYPTION_KEY": "security.encryption_key",
}


def _example_secret_values() -> dict[str, str]:
    doc = yaml.safe_load((ROOT / "deploy/k8s/base/secret.example.yaml").read_text())
    return {k: v for k, v in doc["stringData"].items() if k in ENV_PATH}


def test_strong_secrets_in_production_mode_load() -> None:
    s = load_settings(None, env=PRODUCTION)
    assert not s.embedded and not s.dry_run


@pytest.mark.parametrize("var", sorted(ENV_PATH))
def test_the_values_shipped_in_secret_example_yaml_are_refused(var: str) -> None:
    value = _example_secret_values()[var]
    with pytest.raises(ConfigError) as err:
        load_settings(None, env=PRODUCTION | {var: value})
    assert err.value.path == ENV_PATH[var]
    assert "placeholder" in err.value.problem
    assert value not in str(err.value)


@pytest.mark.parametrize("var", sorted(ENV_PATH))
@pytest.mark.parametrize(
    "value",
    ["changeme", "short-but-random-Zq9v", "k" * 40, "CHANGEME-please-0123456789abcdefghij"],
)
def test_short_repeated_or_changeme_secrets_are_refused_naming_the_key(
    var: str, value: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env=PRODUCTION | {var: value})
    assert err.value.path == ENV_PATH[var]
    assert value not in str(err.value)
    assert var in (err.value.allowed or "")


def test_an_old_encryption_key_after_the_first_is_checked_too() -> None:
    keys = f"{Fernet.generate_key().decode()},your-fernet-key"
    with pytest.raises(ConfigError, match=r"security\.encryption_key"):
        load_settings(None, env=PRODUCTION | {"CONNECTOR_ENCRYPTION_KEY": keys})


def test_a_weak_previous_signing_key_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "connectors:\n  calendly:\n    webhook:\n"
        f"      signing_key: {STRONG_SIGNING}\n      previous_signing_keys: [old-key]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env=PRODUCTION)
    assert err.value.path == "connectors.calendly.webhook.previous_signing_keys.0"
    assert "old-key" not in str(err.value)


def test_embedded_mode_with_a_brevo_key_is_not_exempt() -> None:
    env = {"BREVO_API_KEY": "xkeysib-live", "CALENDLY_WEBHOOK_SIGNING_KEY": "your-signing-key"}
    with pytest.raises(ConfigError, match="signing_key"):
        load_settings(None, env=env)


def test_the_embedded_dry_run_demo_accepts_a_short_key(tmp_path: Path) -> None:
    s = load_settings(None, env={"CALENDLY_WEBHOOK_SIGNING_KEY": "k"})
    assert s.embedded and s.dry_run


def test_a_job_with_a_database_but_no_redis_or_brevo_key_is_not_exempt() -> None:
    """A Kubernetes CronJob gets only the secrets it reads (issue 13 point 11): no REDIS_URL and
    no Brevo key, which looks like the embedded dry run, but it is production and is checked."""
    env = {
        "DATABASE_URL": "postgresql://calendly_brevo:pw@postgres:5432/calendly_brevo",
        "CONNECTOR_ENCRYPTION_KEY": "your-fernet-key",
    }
    with pytest.raises(ConfigError, match="encryption_key"):
        load_settings(None, env=env)
