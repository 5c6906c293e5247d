"""Fixtures for the Calendly side: a running fake Calendly, migrated SQLite, wired services."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.client import CalendlyClient, StaticToken
from calendly_brevo.config import Settings
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.queueing import sqlite_queue_path
from tests.conftest import make_settings
from tests.fakes.calendly import FakeCalendlyServer, running_fake_calendly

ENCRYPTION_KEY = Fernet.generate_key().decode()


@pytest.fixture
def cal() -> Iterator[FakeCalendlyServer]:
    with running_fake_calendly() as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def client(cal: FakeCalendlyServer, http: httpx.Client) -> CalendlyClient:
    return CalendlyClient(http, StaticToken(cal.pat), base_url=cal.base_url, sleep=lambda _s: None)


def calendly_settings(tmp_path: Path, cal: FakeCalendlyServer, **env: Any) -> Settings:
    base: dict[str, Any] = {
        "CALENDLY_ACCESS_TOKEN": cal.pat,
        "CALENDLY_API_URL": cal.base_url,
        "CONNECTOR_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'connector.db'}",
    }
    base.update(env)
    return make_settings(tmp_path, **base)


@pytest.fixture
def make_services(tmp_path: Path, cal: FakeCalendlyServer) -> Iterator[Callable[..., Services]]:
    made: list[Services] = []

    def make(**env: Any) -> Services:
        services = Services(calendly_settings(tmp_path, cal, **env))
        upgrade(services.engine)
        made.append(services)
        return services

    yield make
    for services in made:
        services.close()


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    return make_services()


def queued_envelopes(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """(source, envelope) of every message in the embedded SQLite queue, in order."""
    path = sqlite_queue_path(settings.storage.data_dir)
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT data FROM queue_messages ORDER BY seq").fetchall()
    out = []
    for (data,) in rows:
        body, _received_at, source = json.loads(data)["args"]
        out.append((source, json.loads(body)))
    return out
