"""webhooks · backfill · reconcile · links · doctor: the Calendly-side commands.

They decode options, call the plain functions in :mod:`calendly_brevo.calendly` and
:mod:`calendly_brevo.doctor`, and print. ``ctx.obj`` is a :class:`calendly_brevo.bootstrap.Services`
(or the CLI's lazy wrapper of one); tests may set ``brevo_client`` / ``http_client`` on it to inject
fakes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx

from calendly_brevo.brevo.client import client_for
from calendly_brevo.calendly import CalendlyClient, make_client
from calendly_brevo.config import Settings
from calendly_brevo.durations import Duration, When

SCOPE = click.Choice(["organization", "user"])
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
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


def _obj(*, read_only: bool = False) -> Any:
    obj = click.get_current_context().obj
    if obj is None or not hasattr(obj, "settings"):
        raise click.UsageError("no services: run through `calendly-brevo`")
    if read_only and hasattr(obj, "read_only"):
        obj.read_only = True
    return obj


@contextmanager
def _calendly(*, read_only: bool = False) -> Iterator[tuple[Any, Settings, CalendlyClient]]:
    obj = _obj(read_only=read_only)
    settings: Settings = obj.settings
    injected = getattr(obj, "http_client", None)
    http = injected or httpx.Client(timeout=30.0)
    try:
        yield obj, settings, make_client(settings, http, obj.sessions)
    finally:
        if injected is None:
            http.close()


def _who(
    client: CalendlyClient, settings: Settings, scope: str
) -> tuple[str, str | None, str | None]:
    """(created_by, organization, user) for a walk in ``scope``."""
    me = client.me()
    org = settings.calendly.organization_uri or str(me["current_organization"])
    if scope == "organization":
        return str(me["uri"]), org, None
    return str(me["uri"]), None, str(me["uri"])


# --- webhooks -----------------------------------------------------------------------------------
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

    with _calendly() as (obj, settings, client):
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

    with _calendly() as (obj, settings, client):
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
    with _calendly() as (obj, settings, client):
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
    with _calendly() as (obj, settings, client):
        health = _manager(obj, settings, client).check(_default_url(settings, url), repair=repair)
    label = "OK" if health.healthy else "FAIL"
    click.echo(f"{label}: {health.url} {health.state}: {health.message}")
    if health.signing_key:
        _announce_key(
            obj, health.signing_key, str((health.subscription or {}).get("uri")), show_key
        )
    if not health.healthy:
        sys.exit(1)


# --- backfill / reconcile -----------------------------------------------------------------------
def _stats(stats: Any, *names: str) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in names}


@contextmanager
def _progress(window: Any, *, quiet: bool = False) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    if quiet:
        yield lambda _stats: None
        return
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("starting", total=1000)

        def update(stats: Any) -> None:
            fraction = window.fraction(stats.position, datetime.now(UTC)) if window else None
            progress.update(
                task,
                description=(
                    f"events {stats.events} · invitees {stats.invitees} · "
                    f"enqueued {stats.enqueued}"
                    + (f" · skipped {stats.skipped}" if stats.skipped else "")
                ),
                completed=int(fraction * 1000) if fraction is not None else None,
            )

        yield update


@click.command()
@click.option(
    "--since",
    type=When(),
    required=True,
    help="Meetings starting at or after: a date (2024-01-01, ISO) or a duration ago (30d).",
)
@click.option(
    "--until",
    type=When(),
    help="Meetings starting before: a date or a duration ago (default: no limit, future too).",
)
@click.option("--status", type=click.Choice(["active", "canceled"]), help="Default: both.")
@click.option("--scope", type=SCOPE, default="organization", show_default=True)
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue a cursor.")
@click.option("--restart", is_flag=True, help="Forget the saved cursor and start over.")
@JSON
def backfill(
    since: datetime,
    until: datetime | None,
    status: str | None,
    scope: str,
    resume: bool,
    restart: bool,
    as_json: bool,
) -> None:
    """Replay past and future bookings, cancellations and no-shows as webhook events."""
    from calendly_brevo.calendly.backfill import Resume, WalkHooks, Window
    from calendly_brevo.calendly.backfill import backfill as run_backfill

    with _calendly() as (obj, settings, client):
        created_by, org, user = _who(client, settings, scope)
        window = Window(
            since=since,
            until=until,
            status=status,
            organization=org,
            user=user,
        )
        with _progress(window, quiet=as_json) as update:
            stats = run_backfill(
                client,
                obj.enqueuer,
                obj.sessions,
                window,
                created_by=created_by,
                resume=Resume(restart=restart, resume=resume),
                hooks=WalkHooks(on_progress=update),
            )
    if as_json:
        click.echo(json.dumps(_stats(stats, "events", "invitees", "enqueued", "resumed")))
        return
    note = " (resumed)" if stats.resumed else ""
    click.echo(
        f"backfill done{note}: {stats.events} events, {stats.invitees} invitees, "
        f"{stats.enqueued} events enqueued"
    )


@click.command()
@click.option("--window", type=Duration(), default="48h", show_default=True, help="e.g. 48h, 7d.")
@click.option("--scope", type=SCOPE, default="organization", show_default=True)
@JSON
def reconcile(window: timedelta, scope: str, as_json: bool) -> None:
    """Enqueue what webhooks missed: meetings from now-WINDOW on (future ones included)."""
    from calendly_brevo.calendly.backfill import WalkHooks
    from calendly_brevo.calendly.backfill import reconcile as run_reconcile

    with _calendly() as (obj, settings, client):
        created_by, org, user = _who(client, settings, scope)
        with _progress(None, quiet=as_json) as update:
            stats = run_reconcile(
                client,
                obj.enqueuer,
                obj.ledger,
                window=window,
                created_by=created_by,
                organization=org,
                user=user,
                hooks=WalkHooks(on_progress=update),
            )
    if as_json:
        click.echo(json.dumps(_stats(stats, "events", "invitees", "enqueued", "skipped")))
        return
    click.echo(
        f"reconcile done: {stats.events} events, {stats.invitees} invitees, "
        f"{stats.enqueued} enqueued, {stats.skipped} already processed"
    )


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
    with _calendly() as (obj, settings, client):
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

    obj = _obj(read_only=True)
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


COMMANDS = (webhooks, backfill, reconcile, links, doctor)
