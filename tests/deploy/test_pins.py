"""Supply chain: base images pinned by digest, GitHub Actions by commit SHA with the version."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _from_images() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    images = []
    for line in re.findall(r"^FROM\s+(.+)$", text, re.M):
        image = re.sub(r"--platform=\S+\s+", "", line).split(" AS ")[0].strip()
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        images.append(image)
    return images


def test_every_base_image_is_pinned_by_digest() -> None:
    images = _from_images()
    assert images, "the Dockerfile has FROM lines"
    for image in images:
        assert DIGEST.search(image), f"{image}: pin it as name:tag@sha256:<digest>"


def test_every_github_action_is_pinned_by_commit_sha_with_its_version() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert workflows
    uses = [
        (wf.name, m)
        for wf in workflows
        for m in re.findall(r"uses:\s*(\S+.*)$", wf.read_text(encoding="utf-8"), re.M)
    ]
    assert uses
    for name, ref in uses:
        if ref.startswith("./") or ref.startswith("docker://"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s*v\d+(\.\d+)*", ref), (
            f"{name}: {ref!r} needs owner/action@<40-hex sha>  # vX.Y.Z"
        )
