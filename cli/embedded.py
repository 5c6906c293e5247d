"""``calendly-brevo run``: receiver and worker in one process, SQLite store and queue.

For small teams and for trying the connector: nothing but Python is needed. The queue is a
SQLite file (:mod:`worker.sqlite_broker`), so an accepted webhook survives a restart. With no
``BREVO_API_KEY`` the worker runs dry and logs the Brevo calls it would make.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import dramatiq

from calendly_brevo.bootstrap import Services
from calendly_brevo.config import Settings
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.dev_signing_key import dev_key_path
from calendly_brevo.logs import configure_logging, get_logger


def banner(settings: Settings, host: str, port: int, admin_url: str) -> str:
    url = f"http://{host}:{port}"
    mode = "embedded (SQLite queue and store in " + str(settings.storage.data_dir) + ")"
    if settings.storage.redis_url:
        mode = "Redis queue, " + ("Postgres" if "postgres" in settings.database_url else "SQLite")
    brevo = (
        (
            "DRY RUN: "
            + ("brevo.dry_run is true" if settings.brevo.dry_run else "no BREVO_API_KEY")
            + ", Brevo calls are logged, not sent"
        )
        if settings.dry_run
        else f"Brevo at {settings.brevo.api_url}"
    )
    key_note = ""
    if dev_key_path(settings).exists() and not settings.calendly.webhook.keys:
        key_note = f"\n  signing key: local development key in {dev_key_path(settings)}"
    return (
        f"\ncalendly-brevo is running: {mode}\n"
        f"  webhooks:  POST {url}/webhooks/calendly\n"
        f"  health:    {url}/healthz   ready: {url}/readyz\n"
        f"  admin:     {admin_url}/admin/status   metrics: {admin_url}/metrics "
        "(admin port: keep it private)\n"
        f"  brevo:     {brevo}{key_note}\n"
        f"  try it:    calendly-brevo simulate invitee.created --email ada@example.com "
        f"--url {url}/webhooks/calendly\n"
    )


async def _serve(settings: Settings, host: str, port: int, admin_port: int) -> None:
    from receiver.main import build_apps, listen
    from worker.consumer import make_worker
    from worker.runtime import build_runtime, check_brevo_ready

    log = get_logger("calendly_brevo.run")
    services = Services(settings)
    if services.engine.dialect.name == "sqlite":
        upgrade(services.engine)
    # Redis queue: requeue what a killed worker (or a killed ``run``) held, at start and on a
    # timer, before anything that may wait on Brevo. The SQLite queue needs none: the broker
    # makes every row a dead process held ready when it starts (a killed ``run`` restarted).
    maintenance_stop = threading.Event()
    if settings.storage.redis_url:
        from worker.maintenance import maintain_queues

        threading.Thread(
            target=maintain_queues, args=(settings, maintenance_stop), daemon=True
        ).start()
    settings.require_brevo()  # a config error stops us before anything listens
    from calendly_brevo.metrics import set_dry_run

    set_dry_run(settings.dry_run)
    runtime = build_runtime(services)  # SQLite: what a killed ``run`` held is ready again
    listening = await listen(
        build_apps(settings), settings, host=host, port=port, admin_port=admin_port
    )
    print(
        banner(settings, host, listening.port, listening.urls["admin"]),
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def gauges() -> None:
        from worker.gauges import GaugeRefresher

        refresher = GaugeRefresher(services)
        while True:
            await asyncio.to_thread(refresher.refresh)
            await asyncio.sleep(5)

    refresher = asyncio.create_task(gauges())
    worker: dramatiq.Worker | None = None
    resyncer: threading.Thread | None = None
    try:
        # Webhooks are taken (durably queued) while the set-up check waits out a flaky Brevo;
        # the worker starts once Brevo has what the mapping needs, and a definite "missing"
        # (or a 401) stops ``run`` with the fix, the queued events kept for the next start.
        if await _brevo_ready_or_stopped(services, stop, check_brevo_ready):
            worker = make_worker(runtime.broker, runtime.pipeline, settings.worker)
            worker.start()
            from worker.auto_resync import auto_resync  # logs stale contacts; may sweep

            resyncer = threading.Thread(
                target=auto_resync, args=(settings, maintenance_stop, services), daemon=True
            )
            resyncer.start()
            await stop.wait()
    finally:
        log.info("shutting_down")
        refresher.cancel()
        maintenance_stop.set()
        if resyncer is not None:  # a pass ends after its contact at hand; it uses services
            await asyncio.to_thread(resyncer.join, 10)
        await listening.close()
        if worker is not None:
            timeout_ms = int(settings.worker.shutdown_timeout_seconds * 1000)
            await asyncio.to_thread(worker.stop, timeout_ms)
        runtime.broker.close()
        services.close()


async def _brevo_ready_or_stopped(
    services: Services, stop: asyncio.Event, check: Callable[[Services], None]
) -> bool:
    """Run the (possibly long) set-up check in a daemon thread; ``False`` when SIGTERM came
    first. The check's error, if any, is raised here."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if outcome.done():
            return
        if error is None:
            outcome.set_result(None)
        else:
            outcome.set_exception(error)

    def target() -> None:
        try:
            check(services)
        except BaseException as exc:  # handed to the event loop, raised there
            loop.call_soon_threadsafe(settle, exc)
        else:
            loop.call_soon_threadsafe(settle, None)

    threading.Thread(target=target, name="brevo-setup-check", daemon=True).start()
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    waiters: set[asyncio.Future[Any]] = {outcome, stopped}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if outcome.done():
        outcome.result()
        return True
    return False


def run(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    admin_port: int | None = None,
) -> None:
    """Webhooks on ``port`` (``PORT``), admin and metrics on ``admin_port`` (``ADMIN_PORT``)."""
    configure_logging(settings)
    server = settings.server
    asyncio.run(
        _serve(
            settings,
            host or server.host,
            server.port if port is None else port,
            server.admin_port if admin_port is None else admin_port,
        )
    )
