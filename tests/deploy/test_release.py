"""Release hygiene: licence, changelog, one version everywhere, the image CI publishes and the
image kustomize deploys."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
KUSTOMIZATIONS = [
    REPO / "deploy" / "k8s" / "base" / "kustomization.yaml",
    REPO / "deploy" / "k8s" / "overlays" / "production" / "kustomization.yaml",
]


def _version() -> str:
    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _workflow() -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); normalise it.
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return dict(doc)


def test_the_licence_is_mit_and_matches_the_package_metadata() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    with (REPO / "pyproject.toml").open("rb") as f:
        assert tomllib.load(f)["project"]["license"] == {"text": "MIT"}


def test_the_changelog_keeps_an_unreleased_section_above_the_current_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in text
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased"
    assert _version() in headings


def test_version_flag_prints_the_installed_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"calendly-brevo, version {_version()}"
    assert importlib.metadata.version("calendly-brevo") == _version()


def test_the_workflow_publishes_the_image_to_ghcr_only_on_version_tags() -> None:
    workflow = _workflow()
    assert "v*" in workflow["on"]["push"]["tags"]
    assert workflow["env"]["IMAGE"].startswith("ghcr.io/")
    (job,) = workflow["jobs"].values()
    assert job["permissions"]["packages"] == "write"
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push"))
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login"))
    assert login["with"]["registry"] == "ghcr.io"
    assert login["if"] == "startsWith(github.ref, 'refs/tags/v')"
    check = next(s for s in job["steps"] if "pyproject.toml" in s.get("run", ""))
    assert "GITHUB_REF_NAME" in check["run"], "a tag that is not v<version> must fail the run"


def test_kustomize_deploys_the_image_the_workflow_publishes_at_the_package_version() -> None:
    image = _workflow()["env"]["IMAGE"]
    assert "example" not in image
    for path in KUSTOMIZATIONS:
        (entry,) = yaml.safe_load(path.read_text())["images"]
        assert entry == {"name": "calendly-brevo", "newName": image, "newTag": _version()}, path
