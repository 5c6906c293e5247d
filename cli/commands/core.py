"""run · receiver · worker · migrate."""

from __future__ import annotations

import sys

import click

from cli.services import LazyServices

pass_services = click.make_pass_decorator(LazyServices)


ADMIN_PORT_HELP = "Admin port: admin API, OAuth start, /metrics (env ADMIN_PORT, default 8001)."


@click.command()
@click.option("--host", help="Listen address (default server.host, 127.0.0.1).")
@click.option("--port", type=int, help="Webhook port (env PORT, default 8080).")
@click.option("--admin-port", type=int, help=ADMIN_PORT_HELP)
@pass_services
def run(obj: LazyServices, host: str | None, port: int | None, admin_port: int | None) -> None:
    """Receiver and worker in one process (SQLite queue and store unless REDIS_URL is set)."""
    from cli.embedded import run as run_embedded

    run_embedded(obj.settings, host, port, admin_port)


@click.command()
@click.option("--host", help="Listen address (default server.host).")
@click.option("--port", type=int, help="Webhook port (env PORT, default 8080).")
@click.option("--admin-port", type=int, help=ADMIN_PORT_HELP)
@pass_services
def receiver(obj: LazyServices, host: str | None, port: int | None, admin_port: int | None) -> None:
    """Serve POST /webhooks/calendly, the OAuth callback, /healthz and /readyz on the public
    port; the admin API, the OAuth start and /metrics on the admin port."""
    from receiver.main import serve

    serve(obj.settings, host, port, admin_port)


@click.command()
@click.option("--processes", type=int, help="Worker processes (env WORKER_PROCESSES).")
@click.option("--threads", type=int, help="Threads per process (env WORKER_THREADS).")
@pass_services
def worker(obj: LazyServices, processes: int | None, threads: int | None) -> None:
    """Consume the queue and apply events to Brevo."""
    from calendly_brevo.errors import ConfigError

    settings = obj.settings
    if settings.embedded:
        raise ConfigError(
            "storage.redis_url",
            "a separate worker needs the Redis queue",
            "set REDIS_URL, or use `calendly-brevo run` for the embedded single process",
        )
    settings.require_brevo()  # a config error stops us before any thread or process starts
    from worker.main import supervise, with_workers

    sys.exit(supervise(with_workers(settings, processes, threads)))


@click.command()
@click.option("--revision", default="head", show_default=True)
@pass_services
def migrate(obj: LazyServices, revision: str) -> None:
    """Apply database migrations (Alembic) to DATABASE_URL or the embedded SQLite file."""
    from calendly_brevo.db.migrate import upgrade

    upgrade(obj.engine, revision)
    url = obj.engine.url.render_as_string(hide_password=True)
    click.echo(f"database at {url} is at revision {revision}")


COMMANDS = [run, receiver, worker, migrate]
