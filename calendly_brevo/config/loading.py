"""Build :class:`~calendly_brevo.config.settings.Settings` from a YAML file and the environment:
``${VAR}`` interpolation, the environment overrides, and one clear error per bad key."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from calendly_brevo.config.settings import ENV_OVERRIDES, Settings
from calendly_brevo.errors import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset ``${VAR}`` becomes empty."""

    def sub(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        if value is None or (value == "" and m.group(2) is not None):
            return m.group(2) or ""
        return value

    return _VAR.sub(sub, text)


def _expand(data: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value of a parsed document (keys are left alone)."""
    if isinstance(data, dict):
        return {k: _expand(v, env) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, env) for v in data]
    if isinstance(data, str):
        return interpolate(data, env)
    return data


def _yaml_error(path: str, exc: yaml.YAMLError) -> ConfigError:
    """Where and what, without PyYAML's snippet of the offending line (it may hold a secret)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    return ConfigError(path, f"not valid YAML{where}: {problem}", "check the quoting on that line")


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _blank_to_none(data: Any) -> Any:
    """An interpolated-but-empty scalar (``"${UNSET}"`` → ``""``) means "not set"."""
    if isinstance(data, dict):
        return {k: _blank_to_none(v) for k, v in data.items() if v != ""}
    if isinstance(data, list):
        return [_blank_to_none(v) for v in data]
    return data


def _format_errors(err: ValidationError, source: str) -> ConfigError:
    lines = []
    first_path = "config"
    for i, e in enumerate(err.errors()):
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if i == 0:
            first_path = path
        if e["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key (check the spelling; see config.example.yaml)")
        else:
            lines.append(f"  {path}: {e['msg']}")
    return ConfigError(first_path, f"{source} is invalid:\n" + "\n".join(lines))


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from a YAML file (optional) and the environment."""
    env = os.environ if env is None else env
    path = path or env.get("CONNECTOR_CONFIG") or None
    data: dict[str, Any] = {}
    source = "environment"
    if path:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "CONNECTOR_CONFIG", f"cannot read {path}: {exc.strerror}", "a readable YAML file"
            ) from exc
        try:
            loaded = _expand(yaml.safe_load(text), env)
        except yaml.YAMLError as exc:
            raise _yaml_error(str(path), exc) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                str(path), "the top level must be a mapping", "keys such as connectors:"
            )
        data = _blank_to_none(loaded)
    for var, dotted in ENV_OVERRIDES.items():
        value = env.get(var)
        if value:
            _set_path(data, dotted, value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _format_errors(exc, source) from None
    from calendly_brevo.secret_rules import check_secrets

    check_secrets(settings)
    return settings
