"""SECURITY.md exists, covers what the issue asks, and the README links it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_security_md_states_protections_reporting_and_operator_duties() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    for heading in ("## What the connector protects", "## Reporting a problem", "## The operator"):
        assert heading in text
    for topic in ("Signed intake", "Tokens at rest", "PII", "forget", "TLS", "Admin port"):
        assert topic in text
    # Issue 13 points 7 and 11: the admin port and the per-process secrets are stated.
    for fact in ("ADMIN_PORT", "8001", "/metrics", "NetworkPolicy", "secretKeyRef", "worker holds"):
        assert fact in text, fact
    assert "(SECURITY.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
