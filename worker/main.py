"""Worker processes: ``calendly-brevo worker --processes N --threads M``.

The parent process supervises N children (spawned, not forked: each child opens its own Redis,
Postgres and HTTP pools), restarts a child that dies, serves ``/metrics`` (all processes,
prometheus-client multiprocess mode) and ``/healthz`` on ``worker.metrics_port``, and refreshes
the queue-depth and dead-letter gauges. On SIGTERM it forwards SIGTERM to the children, each of
which stops taking messages, finishes what it holds within ``worker.shutdown_timeout_seconds``
and requeues the rest, including a message still running when the budget is spent (see
:func:`_requeue_unfinished`). What a *killed* worker held is requeued by the queue maintenance
thread (:mod:`worker.maintenance`) within ``worker.heartbeat_timeout_seconds +
worker.maintenance_interval_seconds``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from calendly_brevo.config import Settings

HEALTH = b'{"status":"ok"}'
GAUGE_INTERVAL_SECONDS = 10.0


def _prepare_multiproc_dir() -> tuple[str, bool]:
    """The multiprocess metrics directory, emptied; ``True`` when we created it."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    created = not path
    if not path:
        path = tempfile.mkdtemp(prefix="calendly-brevo-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    for child in Path(path).iterdir():
        if child.is_file():
            child.unlink()
    # Dramatiq's own Prometheus middleware reads this name at import.
    os.environ["dramatiq_prom_db"] = path
    return path, created


def with_workers(settings: Settings, processes: int | None, threads: int | None) -> Settings:
    """``settings`` with ``worker --processes/--threads`` (when given) in ``settings.worker``,
    the one place the rest reads them (each process's database pool is sized from
    ``worker.threads``: :func:`calendly_brevo.db.engine.pool_size_for`)."""
    given = {k: v for k, v in (("processes", processes), ("threads", threads)) if v}
    if not given:
        return settings
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=given)})


def run_process(settings: Settings, *, metrics_multiprocess: bool = True) -> int:
    """One worker process: consume until SIGTERM/SIGINT, then stop within the shutdown budget."""
    from dramatiq.middleware import Middleware

    from calendly_brevo.bootstrap import Services
    from calendly_brevo.logs import configure_logging, get_logger

    configure_logging(settings)
    log = get_logger("calendly_brevo.worker")
    extra: list[Middleware] = []
    if metrics_multiprocess and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from dramatiq.middleware.prometheus import Prometheus

        extra.append(Prometheus())
    from worker.consumer import make_worker
    from worker.runtime import build_runtime

    threads = settings.worker.threads
    services = Services(settings)
    runtime = build_runtime(services, extra_middleware=extra)
    runtime.broker.emit_after("process_boot")
    worker = make_worker(runtime.broker, runtime.pipeline, settings.worker)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # What start-up built (modules, settings, clients, the pipeline) lives as long as the
    # process: frozen out of the collector's reach, no collection walks it again.
    gc.collect()
    gc.freeze()
    worker.start()
    marker = _ready_marker(os.getpid())
    if marker is not None:
        marker.touch()  # the supervisor's /healthz: this process is consuming
    log.info("worker_started", pid=os.getpid(), threads=threads, dry_run=settings.dry_run)
    stop.wait()
    log.info("worker_stopping", timeout=settings.worker.shutdown_timeout_seconds)
    worker.stop(timeout=int(settings.worker.shutdown_timeout_seconds * 1000))
    unfinished = _requeue_unfinished(runtime.broker)
    if unfinished:
        log.warning("worker_requeued_unfinished", messages=unfinished)
    runtime.broker.close()
    services.close()
    log.info("worker_stopped")
    return 0


def _requeue_unfinished(broker: Any) -> int:
    """Put back on their queues the messages this process fetched and never acked.

    After ``Worker.stop`` these are the messages still running when the shutdown budget ran
    out, plus any Dramatiq's consumer had prefetched but not handed over when it stopped.
    Without this they sit in this broker's ack set until queue maintenance notices the missed
    heartbeat (:mod:`worker.maintenance`), a minute or more. Requeueing one that is still
    running is safe: the next attempt waits on the contact lock until this process exits, and
    the claim and recorded effects make it finish the work rather than redo it (the one-commit
    window in :mod:`calendly_brevo.ledger` is the same as for a crash).
    """
    from dramatiq.brokers.redis import RedisBroker

    if not isinstance(broker, RedisBroker):
        return 0  # the SQLite queue releases what a process held at the next start
    total = 0
    for queue in sorted(broker.get_declared_queues() | broker.get_declared_delay_queues()):
        key = f"{broker.namespace}:__acks__.{broker.broker_id}.{queue}"
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in broker.client.smembers(key)]
        if ids:
            broker.do_requeue(queue, *ids)
            total += len(ids)
    return total


def _child(settings: Settings) -> None:
    os._exit(run_process(settings))


def _ready_marker(pid: int) -> Path | None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) / f"ready-{pid}" if directory else None


def _metrics_app(settings: Settings, healthy: Callable[[], bool] = lambda: True) -> Any:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    from calendly_brevo.metrics import PROCESS_FACTS, set_dry_run

    set_dry_run(settings.dry_run)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(PROCESS_FACTS)
    registry.register(ProcessTreeCollector())
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/healthz":
            if healthy():
                start_response("200 OK", [("Content-Type", "application/json")])
                return [HEALTH]
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"status":"worker processes starting or down"}']
        return metrics_app(environ, start_response)

    return app


def _constant(value: int) -> Any:
    return lambda: value


class ProcessTreeCollector:
    """``process_*`` metrics of the supervisor and its worker processes, summed.

    The multiprocess registry has no process collector, and one series per pid would be
    high-cardinality and churn on every restart. Memory, CPU seconds and open fds are summed
    over the supervisor and its live children (what the pod uses; a restarted child resets its
    share of the CPU counter, which ``rate()`` treats as a counter reset); start time and the
    fd limit are the supervisor's.
    """

    SUMMED = (
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
    )

    def collect(self) -> Any:
        from prometheus_client.core import Metric
        from prometheus_client.process_collector import ProcessCollector

        me = os.getpid()
        pids = [me] + [p.pid for p in multiprocessing.active_children() if p.pid]
        families: dict[str, Metric] = {}
        for pid in pids:
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                total = families.get(family.name)
                if total is None:
                    if pid == me:  # the supervisor's families come first
                        families[family.name] = family
                elif family.name in self.SUMMED and family.samples and total.samples:
                    first = total.samples[0]
                    total.samples[0] = first._replace(value=first.value + family.samples[0].value)
        return list(families.values())


#: A metrics/health client gets this long (seconds) per read or write, then is dropped.
HTTP_TIMEOUT_SECONDS = 10.0


class _QuietHandler(WSGIRequestHandler):
    timeout = HTTP_TIMEOUT_SECONDS  # StreamRequestHandler sets it on the client socket

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per connection: an idle or slow client never blocks ``/healthz``."""

    daemon_threads = True


def serve_metrics(host: str, port: int, app: Any) -> WSGIServer:
    """Bind the worker's metrics/health server (threaded, with per-client timeouts); the caller
    runs ``serve_forever`` in a thread."""
    return make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)


def _refresh_gauges(settings: Settings, stop: threading.Event) -> None:
    from calendly_brevo.bootstrap import Services
    from worker.gauges import GaugeRefresher

    services = Services(settings)
    try:
        refresher = GaugeRefresher(services)
        while True:
            refresher.refresh()
            if stop.wait(GAUGE_INTERVAL_SECONDS):
                break
    finally:
        services.close()


def _start_metrics_server(settings: Settings, healthy: Callable[[], bool], log: Any) -> Any:
    """The supervisor's ``/metrics`` and ``/healthz`` server, or ``None`` without a port."""
    if not settings.worker.metrics_port:
        return None
    try:
        server = serve_metrics(
            "0.0.0.0",  # noqa: S104 - the metrics port is meant to be scraped
            settings.worker.metrics_port,
            _metrics_app(settings, healthy),
        )
    except OSError as exc:
        from calendly_brevo.errors import ConfigError

        raise ConfigError(
            "worker.metrics_port",
            f"cannot listen on port {settings.worker.metrics_port}: {exc.strerror}",
            "a free port per worker supervisor on the host (METRICS_PORT), or 0 for none",
        ) from exc
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info("worker_metrics_listening", port=settings.worker.metrics_port)
    return server


def _keep_children_alive(
    children: list[Any], spawn: Callable[[], Any], stopping: threading.Event, log: Any
) -> None:
    """Until ``stopping``: replace any worker process that died, backing off as they repeat."""
    restarts = 0
    while not stopping.wait(0.5):
        for i, p in enumerate(children):
            if p.is_alive() or stopping.is_set():
                continue
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(p.pid or 0)
            restarts += 1
            log.warning("worker_process_died", pid=p.pid, exitcode=p.exitcode, restarts=restarts)
            time.sleep(min(5.0, 0.2 * restarts))
            children[i] = spawn()


def _stop_children(children: list[Any], settings: Settings, log: Any) -> None:
    """SIGTERM every child, wait for the shutdown budget, then kill what is left."""
    log.info("worker_supervisor_stopping", children=len(children))
    for p in children:
        if p.is_alive() and p.pid:
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.worker.shutdown_timeout_seconds + 5
    for p in children:
        p.join(max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            log.error("worker_process_killed", pid=p.pid)
            p.kill()
            p.join(5)


def supervise(settings: Settings) -> int:
    """Run ``worker.processes`` worker processes until SIGTERM; restart any that die."""
    from calendly_brevo.logs import configure_logging, get_logger

    multiproc_dir, created_dir = _prepare_multiproc_dir()
    configure_logging(settings)
    log = get_logger("calendly_brevo.worker")
    from calendly_brevo.bootstrap import Services
    from worker.maintenance import maintain_queues
    from worker.runtime import check_brevo_ready

    # First, before anything that may wait on Brevo: a killed worker's messages come back
    # whatever state Brevo is in.
    stopping = threading.Event()
    threading.Thread(target=maintain_queues, args=(settings, stopping), daemon=True).start()
    check_services = Services(settings)
    try:
        check_brevo_ready(check_services)
    finally:
        check_services.close()
    if settings.dry_run:
        log.warning("brevo_dry_run", detail="DRY RUN: Brevo calls are logged, not sent")
    ctx = multiprocessing.get_context("spawn")

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    children: list[Any] = []

    def healthy() -> bool:
        """Every worker process is alive and has started consuming."""
        return bool(children) and all(
            p.is_alive() and (m := _ready_marker(p.pid or 0)) is not None and m.exists()
            for p in children
        )

    def spawn() -> Any:
        p = ctx.Process(target=_child, args=(settings,), daemon=False)
        p.start()
        return p

    server = _start_metrics_server(settings, healthy, log)
    threading.Thread(target=_refresh_gauges, args=(settings, stopping), daemon=True).start()
    from worker.auto_resync import auto_resync  # logs stale contacts; sync.auto_resync sweeps

    threading.Thread(target=auto_resync, args=(settings, stopping), daemon=True).start()
    children.extend(spawn() for _ in range(settings.worker.processes))
    _keep_children_alive(children, spawn, stopping, log)
    _stop_children(children, settings, log)
    if server is not None:
        server.shutdown()
    if created_dir:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    return 0
