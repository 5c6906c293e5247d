"""The worker supervisor's /healthz says whether its processes are consuming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.pool import QueuePool

from calendly_brevo.bootstrap import Services
from calendly_brevo.db.engine import pool_size_for
from tests.conftest import make_settings
from worker.main import _metrics_app, with_workers


def call(app: Any, path: str) -> tuple[str, bytes]:
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], body


def test_healthz_is_503_until_every_worker_process_consumes(
    tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    state = {"ok": False}
    app = _metrics_app(make_settings(tmp_path), lambda: state["ok"])
    assert call(app, "/healthz")[0].startswith("503")
    state["ok"] = True
    status, body = call(app, "/healthz")
    assert status.startswith("200")
    assert body == b'{"status":"ok"}'


def test_metrics_carry_the_build_version_and_the_dry_run_state(
    tmp_path: Any, monkeypatch: Any
) -> None:
    from calendly_brevo import __version__

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    status, body = call(_metrics_app(make_settings(tmp_path)), "/metrics")
    assert status.startswith("200")
    text = body.decode()
    assert f'calendly_brevo_build_info{{version="{__version__}"}} 1.0' in text
    assert "calendly_brevo_dry_run 1.0" in text


def test_a_production_worker_without_a_brevo_key_refuses_to_start_naming_the_key(
    tmp_path: Any, monkeypatch: Any
) -> None:
    import subprocess
    import sys

    env = {
        "PATH": "/usr/bin:/bin",
        "CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "config error at brevo.api_key" in result.stderr
    assert "BREVO_DRY_RUN=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_threads_from_the_command_line_size_each_process_database_pool(
    tmp_path: Path,
) -> None:
    """`worker --threads 16` with the config's 4: the pool is sized from 16 (a waiting thread
    holds no connection, so not one per thread: ``min(threads, 8) + 2``), not from the 4."""
    settings = make_settings(
        tmp_path, DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test", WORKER_THREADS=4
    )
    services = Services(with_workers(settings, None, 16))
    try:
        pool = services.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == pool_size_for(16) == 10 != pool_size_for(4)
    finally:
        services.close()
