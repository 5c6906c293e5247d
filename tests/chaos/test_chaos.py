"""Nothing accepted is lost, effects happen once, and the end state is the model's, while worker
processes are SIGKILLed, Redis and Postgres crash and restart and Brevo misbehaves.

The short run (a few hundred events, about two minutes) is part of ``make test``; the full run
(a few thousand) is ``make chaos``. See :mod:`tests.chaos.runner` for what happens and why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.infra import PrivatePostgres, PrivateRedis
from tests.chaos.runner import ChaosRun
from tests.conftest import IN_CI

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def _need_servers() -> None:
    why = PrivateRedis.available() or PrivatePostgres.available()
    if why:
        if IN_CI:
            pytest.fail(f"chaos run cannot start its own servers: {why}")
        pytest.skip(why)


def _run(tmp_path: Path, **options: object) -> ChaosRun:
    _need_servers()
    run = ChaosRun(tmp_path / "chaos", **options)  # type: ignore[arg-type]
    report = run.run()
    print("\n" + report.summary())
    assert report.problems() == [], report.summary() + "\nlogs: " + str(tmp_path / "chaos")
    assert report.kills >= 3 and report.redis_restarts == 1 and report.postgres_restarts == 1
    assert report.http_503 > 0, "the receivers never answered 503 while Redis was down"
    assert report.pairs_cancel_first and report.pairs_create_first
    assert report.replayed == report.dead_lettered
    return run


@pytest.mark.timeout(420)
def test_a_short_chaos_run_loses_nothing_and_applies_each_event_once(tmp_path: Path) -> None:
    _run(tmp_path, events=300, seed=int(os.environ.get("CHAOS_SEED", "7")), send_seconds=40)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_the_full_chaos_run_loses_nothing_and_applies_each_event_once(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        events=int(os.environ.get("CHAOS_EVENTS", "3000")),
        seed=int(os.environ.get("CHAOS_SEED", "11")),
        send_seconds=float(os.environ.get("CHAOS_SEND_SECONDS", "300")),
        drain_timeout=600.0,
        # CHAOS_LIVE_IMPORTS=1: first-time contacts through POST /contacts/import
        live_imports=os.environ.get("CHAOS_LIVE_IMPORTS") == "1",
    )
    # The in-doubt path was exercised, not just never needed.
    assert run.report.lost_answers > 0 and run.report.lookups > 0, run.report.summary()
    assert run.report.bulk.get("POST /v3/events/batch", 0) > 0, run.report.summary()
    if run.live_imports:
        assert run.report.bulk.get("POST /v3/contacts/import", 0) > 0, run.report.summary()
