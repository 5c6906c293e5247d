"""Config: the seed's YAML loads verbatim, env interpolation and overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from calendly_brevo.config import interpolate, load_settings
from calendly_brevo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

SEED_BASIC = """
connectors:
  calendly:
    enabled: true
    access_token: "${CALENDLY_ACCESS_TOKEN}"
    sync:
      contacts: true
      events: true
      cancellations: true
    event_mapping:
      discovery_call:
        list_id: 10
        event_type_uri: "https://api.calendly.com/event_types/abc123"
      demo:
        list_id: 11
        event_type_uri: "https://api.calendly.com/event_types/xyz789"
    webhook:
      signing_key: "${CALENDLY_WEBHOOK_SIGNING_KEY}"
"""
SEED_FIELDS = """
field_mapping:
  email: email
  name: FIRSTNAME
  questions_and_answers:
    company: COMPANY
    role: JOB_TITLE
    phone: SMS
  event_type_name: CALENDLY_EVENT_TYPE
  scheduled_at: MEETING_DATE
  status: BOOKING_STATUS
"""
SEED_DEBUG = """
connectors:
  calendly:
    debug: true
    log_level: verbose
    log_webhooks: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_seed_basic_and_field_mapping_blocks_load_verbatim(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_BASIC + SEED_FIELDS)
    s = load_settings(
        path, env={"CALENDLY_ACCESS_TOKEN": "pat-1", "CALENDLY_WEBHOOK_SIGNING_KEY": "k"}
    )
    cal = s.calendly
    assert cal.access_token is not None and cal.access_token.get_secret_value() == "pat-1"
    assert cal.event_mapping["demo"].lists == (11,)
    assert cal.event_mapping["discovery_call"].event_type_uri.endswith("abc123")  # type: ignore[union-attr]
    assert cal.webhook.keys == ("k",)
    assert s.mapping.questions_and_answers == {
        "company": "COMPANY",
        "role": "JOB_TITLE",
        "phone": "SMS",
    }
    assert s.mapping.scheduled_at == "MEETING_DATE"


def test_seed_debug_block_loads(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, SEED_DEBUG), env={})
    assert s.calendly.debug and s.calendly.log_webhooks and s.calendly.log_level == "verbose"


def test_example_config_loads() -> None:
    s = load_settings(ROOT / "config.example.yaml", env={"CALENDLY_WEBHOOK_SIGNING_KEY": "x"})
    assert s.calendly.event_mapping["discovery_call"].list_id == 10
    assert s.dry_run


def test_interpolation_supports_defaults() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("${A} ${B:-two} ${EMPTY:-three} ${MISSING}", env) == "1 two three "


def test_unset_variable_means_not_set(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, SEED_BASIC), env={})
    assert s.calendly.access_token is None
    assert s.calendly.webhook.keys == ()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    text = SEED_BASIC + "server:\n  port: 9000\nbrevo:\n  api_url: http://file/v3\n"
    env = {
        "PORT": "7000",
        "BREVO_API_URL": "http://env/v3",
        "BREVO_API_KEY": "xkeysib-abc",
        "DATABASE_URL": "postgres://u:p@db/x",
        "REDIS_URL": "redis://r:6379/0",
        "CALENDLY_API_URL": "http://fake-calendly",
    }
    s = load_settings(write(tmp_path, text), env=env)
    assert s.server.port == 7000
    assert s.brevo.api_url == "http://env/v3"
    assert not s.dry_run
    assert s.database_url == "postgresql+psycopg://u:p@db/x"
    assert not s.embedded
    assert s.calendly.api_url == "http://fake-calendly"


def test_environment_alone_works_without_a_file() -> None:
    s = load_settings(None, env={"CALENDLY_WEBHOOK_SIGNING_KEY": "k", "PORT": "8123"})
    assert s.server.port == 8123
    assert s.calendly.api_url == "https://api.calendly.com"
    assert s.brevo.api_url == "https://api.brevo.com/v3"
    assert s.embedded and s.database_url.startswith("sqlite:///")


def test_config_path_from_connector_config_env(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_DEBUG)
    assert load_settings(None, env={"CONNECTOR_CONFIG": str(path)}).calendly.debug


def test_unknown_key_fails_with_its_path(tmp_path: Path) -> None:
    text = SEED_BASIC.replace("    sync:", "    snyc:")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), env={})
    assert "connectors.calendly.snyc" in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_fails_with_its_path(tmp_path: Path) -> None:
    text = SEED_BASIC.replace("list_id: 10", "list_id: ten")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), env={})
    assert "connectors.calendly.event_mapping.discovery_call.list_id" in str(err.value)


def test_lower_case_attribute_name_fails_with_a_suggestion(tmp_path: Path) -> None:
    text = SEED_FIELDS.replace("COMPANY", "company name")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), env={})
    assert "field_mapping" in str(err.value)
    assert "COMPANY_NAME" in str(err.value)


def test_bad_yaml_and_missing_file_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "connectors: [unclosed"), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_bad_environment_value_fails_with_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(None, env={"PORT": "eighty"})


def test_secrets_never_show_in_repr_or_str(tmp_path: Path) -> None:
    env = {
        "CALENDLY_ACCESS_TOKEN": "pat-secret-123",
        "CALENDLY_WEBHOOK_SIGNING_KEY": "sign-secret-456-Qm8vR2xT5nW9pL3kZ7bY",
        "BREVO_API_KEY": "xkeysib-secret-789",
    }
    s = load_settings(None, env=env)
    for text in (repr(s), str(s), s.model_dump_json()):
        for secret in env.values():
            assert secret not in text


def test_require_names_the_missing_secret_and_the_fix() -> None:
    s = load_settings(None, env={})
    with pytest.raises(ConfigError) as err:
        s.require("brevo.api_key")
    assert "brevo.api_key" in str(err.value)
    assert err.value.allowed is not None and "BREVO_API_KEY" in err.value.allowed


def test_require_refuses_placeholders() -> None:
    s = load_settings(None, env={"CALENDLY_ACCESS_TOKEN": "your_personal_access_token"})
    with pytest.raises(ConfigError, match="placeholder"):
        s.require("connectors.calendly.access_token")


def test_plan_presets_and_overrides_give_buckets(tmp_path: Path) -> None:
    text = "brevo:\n  plan: advanced\n  rate_limits:\n    events: {rate: 5, burst: 2}\n"
    s = load_settings(write(tmp_path, text), env={})
    assert s.brevo.bucket("contacts").rate == 20
    assert s.brevo.bucket("events").rate == 5
    assert s.brevo.bucket("other").rate == pytest.approx(100 / 3600)


@pytest.mark.parametrize("margin", ["-0.1", "0.6", "lots"])
def test_a_rate_margin_outside_0_to_half_a_window_is_a_config_error_naming_the_key(
    tmp_path: Path, margin: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, f"brevo:\n  rate_margin: {margin}\n"), env={})
    assert err.value.path == "brevo.rate_margin"


def test_a_production_worker_without_a_brevo_key_is_a_config_error_naming_the_key() -> None:
    s = load_settings(None, env={"REDIS_URL": "redis://r:6379/0"})
    with pytest.raises(ConfigError) as err:
        s.require_brevo()
    assert err.value.path == "brevo.api_key"
    assert err.value.allowed and "BREVO_API_KEY" in err.value.allowed
    assert "BREVO_DRY_RUN=true" in err.value.allowed


def test_an_explicit_dry_run_is_dry_even_with_a_key_and_needs_no_key() -> None:
    prod = {"REDIS_URL": "redis://r:6379/0", "BREVO_DRY_RUN": "true"}
    load_settings(None, env=prod).require_brevo()
    s = load_settings(None, env=prod | {"BREVO_API_KEY": "xkeysib-abc"})
    assert s.dry_run
    from calendly_brevo.brevo.client import BrevoClient

    assert BrevoClient.from_settings(s).dry_run


def test_embedded_mode_stays_dry_without_a_key_unless_dry_run_is_false() -> None:
    s = load_settings(None, env={})
    s.require_brevo()
    assert s.dry_run
    with pytest.raises(ConfigError, match=r"brevo\.dry_run is false"):
        load_settings(None, env={"BREVO_DRY_RUN": "false"}).require_brevo()


def test_brevo_dry_run_refuses_anything_but_a_boolean() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"BREVO_DRY_RUN": "maybe"})
    assert err.value.path == "brevo.dry_run"


def test_the_start_up_banner_says_dry_run_and_why(tmp_path: Path) -> None:
    from cli.embedded import banner

    implicit = banner(
        load_settings(None, env={"CONNECTOR_DATA_DIR": str(tmp_path)}), "h", 1, "http://h:2"
    )
    assert "DRY RUN: no BREVO_API_KEY" in implicit
    explicit = load_settings(None, env={"BREVO_API_KEY": "xkeysib-a", "BREVO_DRY_RUN": "true"})
    assert "DRY RUN: brevo.dry_run is true" in banner(explicit, "h", 1, "http://h:2")
    live = load_settings(None, env={"BREVO_API_KEY": "xkeysib-a"})
    assert "DRY RUN" not in banner(live, "h", 1, "http://h:2")


def test_field_mapping_email_other_than_email_is_refused_with_the_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("field_mapping:\n  email: EMAIL_ADDRESS\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert err.value.path == "field_mapping.email"
    assert "always identified by the invitee's email" in str(err.value)
    cfg.write_text("field_mapping:\n  email: email\n")
    assert load_settings(cfg, env={}).mapping.email == "email"


def test_a_blank_event_type_filter_entry_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "connectors:\n  calendly:\n    sync:\n      event_types:\n        exclude: ['  ']\n"
    )
    with pytest.raises(ConfigError, match=r"connectors\.calendly\.sync\.event_types\.exclude"):
        load_settings(str(path), env={})
