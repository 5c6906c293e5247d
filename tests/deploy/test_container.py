"""The container image (Dockerfile, .dockerignore) and docker-compose.yml.

No Docker engine is needed: the Dockerfile is read as text (hadolint lints it when on PATH) and
the compose file as YAML."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from calendly_brevo.config import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
UID = "10001"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|make|build-essential|apt-get|pip|uv)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def _stages() -> list[Stage]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
            image, _, alias = re.sub(r"--platform=\S+\s+", "", base).partition(" AS ")
            stages.append(Stage(image.strip(), alias.strip() or None))
        else:
            stages[-1].instructions.append((keyword, rest))
    return stages


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8")))


# --- Dockerfile -----------------------------------------------------------------------------------
def test_the_image_is_built_in_stages_and_runs_on_python_311_slim() -> None:
    stages = _stages()
    runtime = stages[-1]
    builder = next(s for s in stages if s.name == "builder")
    assert runtime.base.partition("@")[0] == "python:3.11-slim"
    assert builder.base == runtime.base, "the venv's python symlinks need the same base image"


def test_the_builder_installs_the_locked_dependencies_without_dev_tools() -> None:
    builder = next(s for s in _stages() if s.name == "builder")
    syncs = [r for r in builder.args("RUN") if "uv sync" in r]
    assert syncs
    for run in syncs:
        assert "--frozen" in run and "--no-dev" in run, run
    assert "--no-editable" in syncs[-1], "the runtime stage has no source tree to point at"


def test_the_runtime_stage_runs_as_a_non_root_user() -> None:
    runtime = _stages()[-1]
    users = runtime.args("USER")
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == UID, "Kubernetes runs the pods as uid 10001"
    assert any(f"--uid {UID}" in r for r in runtime.args("RUN"))


def test_the_runtime_stage_carries_no_build_tools_or_source_tree() -> None:
    runtime = _stages()[-1]
    for run in runtime.args("RUN"):
        assert not BUILD_TOOLS.search(run), run
    for copy in runtime.args("COPY"):
        assert copy.startswith("--from="), f"only build artefacts are copied: {copy}"
        assert "/opt/venv" in copy


def test_the_image_starts_the_receiver_and_exposes_its_ports() -> None:
    runtime = _stages()[-1]
    assert json.loads(runtime.args("ENTRYPOINT")[-1]) == ["calendly-brevo"]
    assert json.loads(runtime.args("CMD")[-1]) == ["receiver"]
    assert set(" ".join(runtime.args("EXPOSE")).split()) == {"8080", "8001", "9191"}
    env = " ".join(runtime.args("ENV"))
    assert "/opt/venv/bin" in env
    assert "HOST=0.0.0.0" in env


def test_the_build_context_holds_only_what_uv_sync_needs() -> None:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list keeps .git, .venv, .env and data out"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "uv.lock", pyproject["project"]["readme"]}
    needed |= set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert needed <= allowed, needed - allowed


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not on PATH")
def test_hadolint_finds_nothing_to_fix() -> None:
    result = subprocess.run(
        ["hadolint", "--failure-threshold", "warning", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker-compose.yml ---------------------------------------------------------------------------
def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    assert {"redis", "postgres", "setup", "receiver", "worker", "prometheus", "grafana"} <= set(
        compose["services"]
    )


def test_compose_redis_keeps_the_queue_on_disk_with_aof(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_compose_postgres_is_16_with_a_volume_and_a_healthcheck(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert re.match(r"postgres:16\b", postgres["image"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])


def test_compose_sets_up_once_before_the_receiver_and_worker_start(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    setup = services["setup"]
    script = setup["command"][0]
    assert script.index("calendly-brevo migrate") < script.index("calendly-brevo brevo setup")
    assert 'if [ -n "$$PUBLIC_URL" ]; then calendly-brevo webhooks install' in script
    assert setup["restart"] == "no"
    assert setup["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("receiver", "worker"):
        depends = services[name]["depends_on"]
        assert depends["setup"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert "healthcheck" in services[name], name
    assert services["receiver"]["ports"] == ["127.0.0.1:8080:8080", "127.0.0.1:8001:8001"]
    assert services["worker"]["command"][0] == "worker"


def test_compose_app_containers_are_hardened_like_the_pods(compose: dict[str, Any]) -> None:
    for name in ("setup", "receiver", "worker"):
        service = compose["services"][name]
        assert service["user"] == f"{UID}:{UID}", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "/tmp" in service["tmpfs"], name
        assert service["environment"]["CONNECTOR_CONFIG"] == "/etc/calendly-brevo/config.yaml"
    worker = compose["services"]["worker"]
    assert worker["environment"]["PROMETHEUS_MULTIPROC_DIR"] in worker["tmpfs"]


def test_compose_gives_the_worker_time_to_finish_in_flight_messages(
    compose: dict[str, Any],
) -> None:
    grace = compose["services"]["worker"]["stop_grace_period"]
    seconds = int(re.fullmatch(r"(\d+)s", grace).group(1))  # type: ignore[union-attr]
    assert seconds > WorkerSettings().shutdown_timeout_seconds


def test_every_file_compose_mounts_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), (name, source)
