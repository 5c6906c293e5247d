"""links · doctor, and what every Calendly-side command shares (:mod:`cli.commands.webhooks`,
:mod:`cli.commands.backfill`): the services, a Calendly client, who a walk runs as.

The commands decode options, call the plain functions in :mod:`calendly_brevo.calendly` and
:mod:`calendly_brevo.doctor`, and print. ``ctx.obj`` is a :class:`calendly_brevo.bootstrap.Services`
(or the CLI's lazy wrapper of one); tests may set ``brevo_client`` / ``http_client`` on it to inject
fakes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from calendly_brevo.brevo.client import client_for
from calendly_brevo.calendly import CalendlyClient, make_client
from calendly_brevo.config import Settings

SCOPE = click.Choice(["organization", "user"])
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def obj_of(*, read_only: bool = False) -> Any:
    obj = click.get_current_context().obj
    if obj is None or not hasattr(obj, "settings"):
        raise click.UsageError("no services: run through `calendly-brevo`")
    if read_only and hasattr(obj, "read_only"):
        obj.read_only = True
    return obj


@contextmanager
def calendly_session(*, read_only: bool = False) -> Iterator[tuple[Any, Settings, CalendlyClient]]:
    obj = obj_of(read_only=read_only)
    settings: Settings = obj.settings
    injected = getattr(obj, "http_client", None)
    http = injected or httpx.Client(timeout=30.0)
    try:
        yield obj, settings, make_client(settings, http, obj.sessions)
    finally:
        if injected is None:
            http.close()


def who(
    client: CalendlyClient, settings: Settings, scope: str
) -> tuple[str, str | None, str | None]:
    """(created_by, organization, user) for a walk in ``scope``."""
    me = client.me()
    org = settings.calendly.organization_uri or str(me["current_organization"])
    if scope == "organization":
        return str(me["uri"]), org, None
    return str(me["uri"]), None, str(me["uri"])


# --- links --------------------------------------------------------------------------------------
@click.group()
def links() -> None:
    """Single-use Calendly scheduling links."""


@links.command("create")
@click.option(
    "--event-type", required=True, help="Event type URI, event_mapping key, slug or name."
)
@click.option("--max-uses", type=int, default=1, show_default=True, help="Calendly allows 1.")
@click.option("--email", "emails", multiple=True, help="One link per address (repeatable).")
@click.option("--emails-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--attribute", default="CALENDLY_BOOKING_LINK", show_default=True)
def links_create(
    event_type: str,
    max_uses: int,
    emails: tuple[str, ...],
    emails_file: Path | None,
    attribute: str,
) -> None:
    """Create links; with emails, also write each into the Brevo contact's ATTRIBUTE."""
    from calendly_brevo.calendly.links import create_links, read_emails, resolve_event_type

    addresses = list(emails)
    if emails_file is not None:
        addresses += read_emails(emails_file.read_text(encoding="utf-8"))
    with calendly_session() as (obj, settings, client):
        brevo = client_for(obj, settings) if addresses else None
        if addresses and brevo is None:
            click.echo(
                "dry run (no BREVO_API_KEY): links are printed, not written to Brevo", err=True
            )
        uri = resolve_event_type(client, settings, event_type)
        results = create_links(
            client, uri, emails=addresses, max_uses=max_uses, brevo=brevo, attribute=attribute
        )
    for r in results:
        if r.email:
            where = f" -> {attribute}" if r.written else ""
            click.echo(f"{r.email}\t{r.booking_url}{where}")
        else:
            click.echo(r.booking_url)


# --- doctor -------------------------------------------------------------------------------------
@click.command()
@JSON
def doctor(as_json: bool) -> None:
    """Check Calendly, the webhook, Brevo, Redis and the database; exit 1 on any FAIL."""
    from calendly_brevo.doctor import DoctorContext, run_checks

    obj = obj_of(read_only=True)
    settings: Settings = obj.settings
    injected = getattr(obj, "http_client", None)
    http = injected or httpx.Client(timeout=15.0)

    def ping() -> bool:
        return bool(obj.redis.ping())

    try:
        ctx = DoctorContext(
            settings,
            http,
            engine_factory=lambda: obj.engine,
            sessions_factory=lambda: obj.sessions,
            redis_ping=ping if settings.storage.redis_url else None,
            redis_client=(lambda: obj.redis) if settings.storage.redis_url else None,
        )
        results = run_checks(ctx)
    finally:
        if injected is None:
            http.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "healthy": not any(r.status == "FAIL" for r in results),
                    "checks": [
                        {"name": r.name, "status": r.status, "detail": r.detail, "fix": r.fix}
                        for r in results
                    ],
                },
                indent=2,
            )
        )
        sys.exit(1 if any(r.status == "FAIL" for r in results) else 0)
    colors = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
    for r in results:
        click.echo(click.style(f"{r.status:<4}", fg=colors[r.status]) + f" {r.name}: {r.detail}")
        if r.fix and r.status != "OK":
            click.echo(f"     fix: {r.fix}")
    if any(r.status == "FAIL" for r in results):
        sys.exit(1)


COMMANDS = (links, doctor)
