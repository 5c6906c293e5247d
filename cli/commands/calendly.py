"""links, and what every Calendly-side command shares (:mod:`cli.commands.webhooks`,
:mod:`cli.commands.backfill`, :mod:`cli.commands.doctor`): the services, a Calendly client, who
a walk runs as.

The commands decode options, call the plain functions in :mod:`calendly_brevo.calendly`, and
print. ``ctx.obj`` is a :class:`calendly_brevo.bootstrap.Services` (or the CLI's lazy wrapper of
one); tests may set ``brevo_client`` / ``http_client`` on it to inject fakes.
"""

from __future__ import annotations

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


COMMANDS = (links,)
