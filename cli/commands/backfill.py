"""backfill · reconcile: walk Calendly's scheduled events and queue what the connector has not
seen (:mod:`calendly_brevo.calendly.backfill`), with a progress bar on a terminal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from calendly_brevo.durations import Duration, When
from cli.commands.calendly import JSON, SCOPE, calendly_session, who


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

    with calendly_session() as (obj, settings, client):
        created_by, org, user = who(client, settings, scope)
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

    with calendly_session() as (obj, settings, client):
        created_by, org, user = who(client, settings, scope)
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


COMMANDS = (backfill, reconcile)
