"""webhooks install · list · remove · check: the Calendly webhook subscription and its signing
key (:mod:`calendly_brevo.calendly.subscriptions`)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from calendly_brevo.calendly import CalendlyClient
from calendly_brevo.config import Settings
from cli.commands.calendly import JSON, SCOPE, calendly_session

KEY_BANNER = """\
Signing key (shown once; stored encrypted in the database, where the receiver reads it):

    {key}

Receivers without database access: set CALENDLY_WEBHOOK_SIGNING_KEY to this value."""
KEY_STORED = (
    "a new signing key was generated and stored encrypted in the database "
    "(table signing_keys, subscription {uri}); receivers with database access read it from "
    "there. It is not printed{why}. Receivers without database access need it in "
    "CALENDLY_WEBHOOK_SIGNING_KEY: run the command in a terminal with --show-key when the key "
    "is created."
)
SHOW_KEY = click.option(
    "--show-key",
    is_flag=True,
    help="In a terminal, show a newly generated signing key once (never in a pipe or CronJob).",
)


def _interactive(obj: Any) -> bool:
    """A person at a terminal (tests set ``obj.interactive``)."""
    forced = getattr(obj, "interactive", None)
    if forced is not None:
        return bool(forced)
    return sys.stdin.isatty() and sys.stdout.isatty()


def _announce_key(obj: Any, key: str, uri: str, show: bool) -> None:
    """Say where a new signing key is; show the key itself only to a terminal that asked."""
    if show and _interactive(obj):
        click.echo(KEY_BANNER.format(key=key))
        return
    why = " (--show-key needs a terminal)" if show else ""
    click.echo(KEY_STORED.format(uri=uri, why=why))


@click.group()
def webhooks() -> None:
    """Install, list, remove and check the Calendly webhook subscription."""


def _manager(
    obj: Any, settings: Settings, client: CalendlyClient, events: tuple[str, ...] | None = None
) -> Any:
    from calendly_brevo.calendly.subscriptions import manager_for

    return manager_for(settings, client, obj.sessions, events)


def _default_url(settings: Settings, url: str | None) -> str | None:
    from calendly_brevo.calendly.subscriptions import default_callback_url

    return url or default_callback_url(settings.server.public_url)


@webhooks.command("install")
@click.option("--url", help="Callback URL (default PUBLIC_URL + /webhooks/calendly).")
@click.option("--scope", type=SCOPE, default="organization", show_default=True)
@click.option(
    "--events",
    help="Comma-separated events (default: invitee and no-show events, plus "
    "routing_form_submission.created when brevo.upsert_routing_form_submitters is on).",
)
@SHOW_KEY
def webhooks_install(url: str | None, scope: str, events: str | None, show_key: bool) -> None:
    """Subscribe to invitee and no-show events (idempotent: an existing one is adopted)."""
    from calendly_brevo.calendly.subscriptions import subscribed_events

    with calendly_session() as (obj, settings, client):
        target = _default_url(settings, url)
        if not target:
            raise click.UsageError("pass --url https://<host>/webhooks/calendly or set PUBLIC_URL")
        chosen = subscribed_events(settings.brevo.upsert_routing_form_submitters, events, scope)
        if events is None and scope != "organization":
            chosen = tuple(e for e in chosen if e != "routing_form_submission.created")
        result = _manager(obj, settings, client, chosen).install(target, scope)
    sub = result.subscription
    verb = "created" if result.created else "already installed"
    click.echo(f"{verb}: {sub['uri']} ({sub.get('scope')}, {sub.get('state')}) -> {target}")
    click.echo(f"events: {', '.join(sub.get('events') or chosen)}")
    if result.signing_key:
        _announce_key(obj, result.signing_key, str(sub["uri"]), show_key)
    elif not result.created:
        click.echo("its signing key is unchanged (the one stored when it was created)")


@webhooks.command("list")
@JSON
def webhooks_list(as_json: bool) -> None:
    """Show the organization's and your own webhook subscriptions."""
    from rich.console import Console
    from rich.table import Table

    with calendly_session() as (obj, settings, client):
        subs = _manager(obj, settings, client).list_subscriptions()
    if as_json:
        keys = ("uri", "state", "scope", "callback_url", "events", "created_at", "updated_at")
        click.echo(json.dumps([{k: s.get(k) for k in keys} for s in subs], indent=2))
        return
    table = Table("state", "scope", "callback url", "events", "uri")
    for s in subs:
        table.add_row(
            str(s.get("state")),
            str(s.get("scope")),
            str(s.get("callback_url")),
            ", ".join(s.get("events") or []),
            str(s.get("uri")),
        )
    Console(width=200).print(table)
    if not subs:
        click.echo("no webhook subscriptions")


@webhooks.command("remove")
@click.option("--url", help="Remove the subscription(s) with this callback URL.")
@click.option("--uri", help="Remove this subscription (its https://api.calendly.com/… URI).")
def webhooks_remove(url: str | None, uri: str | None) -> None:
    """Delete a webhook subscription (and deactivate its stored signing key)."""
    if not url and not uri:
        raise click.UsageError("pass --url or --uri")
    with calendly_session() as (obj, settings, client):
        removed = _manager(obj, settings, client).remove(url=url, uri=uri)
    for r in removed:
        click.echo(f"removed {r}")
    if not removed:
        click.echo("nothing matched")
        sys.exit(1)


@webhooks.command("check")
@click.option("--url", help="Callback URL to look for (default: the installed one).")
@click.option("--repair", is_flag=True, help="Recreate a disabled or missing subscription.")
@SHOW_KEY
def webhooks_check(url: str | None, repair: bool, show_key: bool) -> None:
    """Exit 1 when the subscription is disabled or missing (for a CronJob or alert)."""
    with calendly_session() as (obj, settings, client):
        health = _manager(obj, settings, client).check(_default_url(settings, url), repair=repair)
    label = "OK" if health.healthy else "FAIL"
    click.echo(f"{label}: {health.url} {health.state}: {health.message}")
    if health.signing_key:
        _announce_key(
            obj, health.signing_key, str((health.subscription or {}).get("uri")), show_key
        )
    if not health.healthy:
        sys.exit(1)


COMMANDS = (webhooks,)
