"""Shared fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An embedded connector in ``tmp_path/data`` with no config file and a wide terminal
    (rich wraps tables at the terminal width)."""
    return {
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": "cli-signing-key-Vb7Nq2Lw9Xr4Tz6Hm1Pk",
        "REDIS_URL": "",
        "DATABASE_URL": "",
        "CONNECTOR_CONFIG": "",
        "COLUMNS": "200",
    }
