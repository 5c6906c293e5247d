"""Migrations run on SQLite and Postgres and leave the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from calendly_brevo.db.engine import make_engine
from calendly_brevo.db.migrate import downgrade, is_current, upgrade
from calendly_brevo.db.models import Base

TABLES = {
    "processed_events",
    "invitees",
    "no_shows",
    "dead_letters",
    "sync_state",
    "oauth_tokens",
    "signing_keys",
    "oauth_connect_links",
    "tombstones",
    "pushed_projections",
}


def check(url: str) -> None:
    engine = make_engine(url)
    assert not is_current(engine)
    upgrade(engine)
    assert is_current(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    downgrade(engine, "base")
    assert not (TABLES & set(inspect(engine).get_table_names()))
    upgrade(engine)  # and back up again
    engine.dispose()


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    check(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.mark.integration
def test_migrations_match_the_models_on_postgres(postgres_url: str) -> None:
    check(postgres_url)
