"""docker-compose.yml without a Docker daemon: valid against the Compose specification's JSON
schema (vendored in compose-spec.json, source and commit in its ``$comment``), every command a
real CLI command, every variable it reads in .env.example, nothing public but Caddy, and no
default passwords."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet

from calendly_brevo.config import load_settings
from calendly_brevo.errors import ConfigError
from cli.main import cli

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
APP_SERVICES = ("setup", "receiver", "worker")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _is_command(argv: list[str]) -> bool:
    group: click.Command = cli
    ctx = click.Context(cli)
    for word in argv:
        if word.startswith("-"):
            return True
        if not isinstance(group, click.Group):
            return True  # an argument of a leaf command
        sub = group.get_command(ctx, word)
        if sub is None:
            return False
        group = sub
    return not isinstance(group, click.Group)


def _cli_invocations(service: dict[str, Any]) -> list[list[str]]:
    command = service.get("command", [])
    if service.get("entrypoint", ["calendly-brevo"])[0] == "calendly-brevo":
        return [list(command)] if command else []
    script = " ".join(command) if isinstance(command, list) else command
    return [
        shlex.split(m.group(1))
        for m in re.finditer(r"calendly-brevo ((?:[\w-]+ ?)+?)(?=&&|;|$|\bfi\b|\belse\b)", script)
    ]


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    assert "170098ba07d9f53c383a41bfd4c5166b0a4529a6" in schema["$comment"]
    # The spec declares draft-07 as "https://json-schema.org/draft-07/schema" (no '#'), which
    # jsonschema does not recognise: name the validator.
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load(COMPOSE.read_text()))


def test_the_schema_check_catches_a_misspelt_key() -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    broken = {"services": {"receiver": {"image": "x", "depends_onn": ["redis"]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_app_command_is_a_real_cli_command(compose: dict[str, Any]) -> None:
    seen = []
    for name in APP_SERVICES:
        for argv in _cli_invocations(compose["services"][name]):
            assert _is_command(argv), (name, argv)
            seen.append(" ".join(argv))
    assert {"migrate", "brevo setup", "webhooks install", "receiver"} <= {
        s.split(" --")[0] for s in seen
    }
    assert not _is_command(["webhooks", "instal"]), "the check itself must catch a typo"


def test_every_variable_compose_reads_is_in_env_example(compose: dict[str, Any]) -> None:
    used = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text())}
    assert used <= set(_env_example()), used - set(_env_example())
    read = set()
    for name in APP_SERVICES:
        read |= set(compose["services"][name]["environment"])
    caddyfile = (REPO / "deploy" / "compose" / "Caddyfile").read_text()
    assert set(re.findall(r"\{\$(\w+)\}", caddyfile)) <= set(_env_example())
    config = (REPO / "deploy" / "compose" / "config.yaml").read_text()
    assert {m.group(1) for m in _VAR.finditer(config)} <= read


def test_passwords_have_no_defaults_and_compose_names_the_missing_one(
    compose: dict[str, Any],
) -> None:
    text = COMPOSE.read_text()
    for var in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "CONNECTOR_ADMIN_TOKEN"):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, var
        assert all(u == f":?set {var} in .env" for u in uses), (var, uses)
    assert _env_example()["POSTGRES_PASSWORD"] == ""
    assert _env_example()["GRAFANA_ADMIN_PASSWORD"] == ""


def test_every_published_port_but_caddys_is_bound_to_localhost(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if name == "caddy":
                assert service["profiles"] == ["https"]
                continue
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_grafana_has_no_anonymous_access_and_no_default_admin_password(
    compose: dict[str, Any],
) -> None:
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_services_wait_for_healthy_dependencies_instead_of_restarting(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, condition in service.get("depends_on", {}).items():
            assert isinstance(condition, dict), (name, dep)
            if "healthcheck" in services[dep]:
                assert condition["condition"] == "service_healthy", (name, dep)
    assert services["caddy"]["depends_on"]["receiver"]["condition"] == "service_healthy"


def _service_env(
    values: dict[str, str], compose: dict[str, Any], service: str = "worker"
) -> dict[str, str]:
    """A service's environment as compose resolves it from ``values`` (a .env)."""
    raw = compose["services"][service]["environment"]
    env = {k: v.replace("$$", "$") for k, v in raw.items()}
    return {
        k: re.sub(r"\$\{(\w+)[^}]*\}", lambda m: values.get(m.group(1), ""), str(v))
        for k, v in env.items()
    }


def test_the_env_example_placeholders_are_refused_at_start_naming_the_key(
    compose: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match="placeholder") as refused:
        load_settings(
            REPO / "deploy" / "compose" / "config.yaml",
            env=_service_env(_env_example(), compose, "receiver"),
        )
    assert "connectors.calendly.webhook.signing_key" in str(refused.value)


def test_the_compose_config_needs_no_brevo_lists_once_the_placeholders_are_replaced(
    compose: dict[str, Any],
) -> None:
    filled = {
        k: (f"{k.lower()}-{'x7Qp' * 10}" if v.startswith("your-") else v)
        for k, v in _env_example().items()
    }
    filled["CONNECTOR_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    config = REPO / "deploy" / "compose" / "config.yaml"
    settings = load_settings(config, env=_service_env(filled, compose))
    assert not settings.embedded
    assert not settings.calendly.event_mapping, "a first booking must not need lists 10 and 11"
    settings.require_brevo()
    receiver = load_settings(config, env=_service_env(filled, compose, "receiver"))
    assert receiver.calendly.webhook.keys and receiver.security.admin_token is not None


def test_each_compose_service_gets_only_the_secrets_it_reads(compose: dict[str, Any]) -> None:
    """As in Kubernetes (issue 13 point 11): the receiver has no Brevo key, the worker none of
    the receiver's or Calendly's secrets."""
    env = {name: set(compose["services"][name]["environment"]) for name in APP_SERVICES}
    assert "BREVO_API_KEY" not in env["receiver"]
    assert (
        not {
            "CONNECTOR_ADMIN_TOKEN",
            "CALENDLY_WEBHOOK_SIGNING_KEY",
            "CALENDLY_ACCESS_TOKEN",
            "CONNECTOR_ENCRYPTION_KEY",
        }
        & env["worker"]
    )
    assert "CONNECTOR_ADMIN_TOKEN" not in env["setup"]


def test_caddy_forwards_only_the_public_paths_to_the_receivers_public_port() -> None:
    caddyfile = (REPO / "deploy" / "compose" / "Caddyfile").read_text()
    (paths,) = re.findall(r"@public path (.+)", caddyfile)
    assert set(paths.split()) == {"/webhooks/calendly", "/oauth/calendly/callback", "/healthz"}
    assert re.findall(r"reverse_proxy (\S+)", caddyfile) == ["receiver:8080"]
