"""``${VAR}`` is expanded after YAML parsing, in values only, and YAML errors never echo secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from calendly_brevo.config import load_settings
from calendly_brevo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NASTY = "sig\"with\\quotes: and #hash\n- and a 'dash' Zq8vR2xT5nW9pL3k"


@pytest.mark.parametrize("quote", ['"', "'", ""])
def test_a_signing_key_with_quotes_and_backslashes_loads_verbatim(
    tmp_path: Path, quote: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "connectors:\n  calendly:\n    webhook:\n"
        f"      signing_key: {quote}${{CALENDLY_WEBHOOK_SIGNING_KEY}}{quote}\n"
    )
    s = load_settings(path, env={"CALENDLY_WEBHOOK_SIGNING_KEY": NASTY})
    assert s.calendly.webhook.keys == (NASTY,)


def test_the_shipped_config_example_takes_a_secret_with_quotes() -> None:
    s = load_settings(ROOT / "config.example.yaml", env={"CALENDLY_ACCESS_TOKEN": 'tok"en\\x'})
    assert s.calendly.access_token is not None
    assert s.calendly.access_token.get_secret_value() == 'tok"en\\x'


def test_a_variable_cannot_inject_yaml_structure(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  public_url: ${URL}\n")
    s = load_settings(path, env={"URL": "x\nbrevo:\n  api_key: injected"})
    assert s.server.public_url == "x\nbrevo:\n  api_key: injected"
    assert s.brevo.api_key is None


def test_defaults_still_apply_and_numbers_still_coerce(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: ${PORT:-8123}\n  public_url: ${UNSET}\n")
    s = load_settings(path, env={})
    assert s.server.port == 8123 and s.server.public_url is None


def test_a_yaml_error_names_line_and_column_but_never_the_line_itself(tmp_path: Path) -> None:
    secret = "literal-secret-Zq8vR2xT5nW9pL3kAb"
    path = tmp_path / "c.yaml"
    path.write_text(f'security:\n  admin_token: "{secret}\n  other: [\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert "not valid YAML at line" in message
    assert secret not in message and secret[:8] not in message
