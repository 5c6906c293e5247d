"""run · receiver · worker · migrate · simulate."""

from __future__ import annotations

import sys

import click

from calendly_brevo.bootstrap import LazyServices

pass_services = click.make_pass_decorator(LazyServices)


ADMIN_PORT_HELP = "Admin port: admin API, OAuth start, /metrics (env ADMIN_PORT, default 8001)."


@click.command()
@click.option("--host", help="Listen address (default server.host, 127.0.0.1).")
@click.option("--port", type=int, help="Webhook port (env PORT, default 8080).")
@click.option("--admin-port", type=int, help=ADMIN_PORT_HELP)
@pass_services
def run(obj: LazyServices, host: str | None, port: int | None, admin_port: int | None) -> None:
    """Receiver and worker in one process (SQLite queue and store unless REDIS_URL is set)."""
    from calendly_brevo.embedded import run as run_embedded

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
    from worker.main import supervise

    sys.exit(
        supervise(
            settings,
            processes or settings.worker.processes,
            threads or settings.worker.threads,
        )
    )


@click.command()
@click.option("--revision", default="head", show_default=True)
@pass_services
def migrate(obj: LazyServices, revision: str) -> None:
    """Apply database migrations (Alembic) to DATABASE_URL or the embedded SQLite file."""
    from calendly_brevo.db.migrate import upgrade

    upgrade(obj.engine, revision)
    url = obj.engine.url.render_as_string(hide_password=True)
    click.echo(f"database at {url} is at revision {revision}")


@click.command()
@click.argument(
    "event",
    type=click.Choice(
        [
            "invitee.created",
            "invitee.canceled",
            "invitee_no_show.created",
            "invitee_no_show.deleted",
            "routing_form_submission.created",
        ]
    ),
)
@click.option("--email", default="ada@example.com", show_default=True)
@click.option("--name", help="Invitee name (default derived from the email).")
@click.option("--url", help="Receiver URL (default http://HOST:PORT/webhooks/calendly).")
@click.option("--key", envvar="SIMULATE_SIGNING_KEY", help="Signing key (default: configured).")
@click.option("--invitee-uri", help="Reuse an invitee URI (a redelivery of the same event).")
@click.option("--event-type-uri", help="Event type URI (to hit an event_mapping entry).")
@click.option("--rescheduled", is_flag=True, help="For invitee.canceled: part of a reschedule.")
@click.option("--reason", default="", help="For invitee.canceled: cancellation reason.")
@click.option("--print", "print_only", is_flag=True, help="Print the signed request, do not send.")
@pass_services
def simulate(
    obj: LazyServices,
    event: str,
    email: str,
    name: str | None,
    url: str | None,
    key: str | None,
    invitee_uri: str | None,
    event_type_uri: str | None,
    rescheduled: bool,
    reason: str,
    print_only: bool,
) -> None:
    """Send a correctly signed example webhook to a running receiver."""
    import json

    import httpx

    from calendly_brevo.errors import ConfigError
    from calendly_brevo.keyring import dev_key_path
    from calendly_brevo.simulate import build_event, send

    settings = obj.settings
    if key is None:
        keys = settings.calendly.webhook.keys
        if keys:
            key = keys[0]
        elif dev_key_path(settings).exists():
            key = dev_key_path(settings).read_text().strip()
        else:
            raise ConfigError(
                "connectors.calendly.webhook.signing_key",
                "no signing key to sign with",
                "pass --key, set CALENDLY_WEBHOOK_SIGNING_KEY, or start `calendly-brevo run` "
                "first (it creates a development key)",
            )
    doc = build_event(
        event,
        email=email,
        name=name,
        invitee_uri=invitee_uri,
        event_type_uri=event_type_uri,
        rescheduled=rescheduled,
        reason=reason,
    )
    host = settings.server.host if settings.server.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    target = url or f"http://{host}:{settings.server.port}/webhooks/calendly"
    if print_only:
        click.echo(json.dumps(doc, indent=2))
        return
    try:
        response = send(target, key, doc)
    except httpx.HTTPError as exc:
        click.secho(f"could not reach {target}: {exc}. Is `calendly-brevo run` running?", fg="red")
        sys.exit(1)
    colour = "green" if response.is_success else "red"
    click.secho(
        f"{event} for {email} -> {target}: {response.status_code} {response.text}", fg=colour
    )
    sys.exit(0 if response.is_success else 1)


COMMANDS = [run, receiver, worker, migrate, simulate]
