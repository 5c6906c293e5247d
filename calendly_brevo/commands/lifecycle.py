"""prune · forget · status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from calendly_brevo.bootstrap import LazyServices
from calendly_brevo.durations import Duration

pass_services = click.make_pass_decorator(LazyServices)


@click.command()
@click.option("--older-than", type=Duration(), help="Default: storage.payload_retention_days.")
@pass_services
def prune(obj: LazyServices, older_than: timedelta | None) -> None:
    """Remove raw payloads and emails of processed events older than the retention."""
    from calendly_brevo.lifecycle import prune as do_prune

    age = (
        older_than
        if older_than is not None
        else timedelta(days=obj.settings.storage.payload_retention_days)
    )
    result = do_prune(obj.sessions, age)
    click.echo(
        f"pruned {result.payloads} payload(s), {result.dead_letters} replayed dead letter(s) "
        f"the payloads of {result.open_dead_letter_payloads} open dead letter(s) "
        f"and the superseded PII of {result.invitees} invitee record(s) older than {age}"
    )


@click.command()
@click.option("--email", required=True, help="The person to forget.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_services
def forget(obj: LazyServices, email: str, yes: bool) -> None:
    """Remove what the connector stores about one person (Brevo's copy is Brevo's to delete)."""
    from calendly_brevo.lifecycle import forget as do_forget

    if not yes:
        click.confirm(f"Forget everything stored about {email}?", abort=True)
    from calendly_brevo.queueing import SqliteQueue, sqlite_queue_path

    settings = obj.settings
    queue = SqliteQueue(sqlite_queue_path(settings.storage.data_dir)) if settings.embedded else None
    try:
        r = do_forget(obj.sessions, email, queue)
    finally:
        if queue is not None:
            queue.close()
    click.echo(
        f"forgot {email}: {r.invitees} invitee record(s), {r.no_shows} no-show mark(s), "
        f"{r.events} event payload(s), {r.dead_letters} dead letter(s), "
        f"{r.queued} queued message(s). "
        "To delete the Brevo contact too, delete it in Brevo (DELETE /v3/contacts/{email})."
    )


def _subscription(sub: dict[str, Any] | None) -> str:
    if not sub:
        return "unknown: none installed from here (`calendly-brevo webhooks install`)"
    where = f"({sub.get('scope', '?')}) {sub.get('url', '')}"
    state = sub.get("state")
    if state is None:
        return f"installed {where}, not checked yet (`calendly-brevo webhooks check`)"
    colour = "green" if state == "active" else "red"
    checked = (
        f", checked {sub['checked_at'][:19].replace('T', ' ')} UTC" if sub.get("checked_at") else ""
    )
    return f"[{colour}]{state}[/{colour}] {where}{checked}"


def _held_by_dead(obj: LazyServices) -> str:
    """Messages a killed worker still holds (Redis), or that a process has taken (SQLite)."""
    settings = obj.settings
    if settings.embedded:
        from calendly_brevo.queueing import QUEUE_NAME, SqliteQueue, sqlite_queue_path

        queue = SqliteQueue(sqlite_queue_path(settings.storage.data_dir))
        try:
            taken = queue.count(QUEUE_NAME, "taken") + queue.count(f"{QUEUE_NAME}.DQ", "taken")
        finally:
            queue.close()
        return f"{taken} taken by `run` (if it died, released when it starts again)"
    from worker.maintenance import describe_stale, stale_holders

    try:
        holders = stale_holders(
            obj.redis, heartbeat_timeout_ms=int(settings.worker.heartbeat_timeout_seconds * 1000)
        )
    except Exception as exc:  # status reports what it can
        return f"[red]unavailable: {exc}[/red]"
    detail, fix = describe_stale(holders, settings)
    if fix:
        return f"[red]{detail}[/red]; fix: {fix}"
    return f"[yellow]{detail}[/yellow]" if holders.messages else detail


@click.command()
@pass_services
def status(obj: LazyServices) -> None:
    """Queue depth, lag, last event applied, dead letters, rate-limit bucket, subscription."""
    from calendly_brevo.lifecycle import status_numbers

    settings = obj.settings
    console = Console()
    table = Table("what", "value", show_header=False, box=None)
    try:
        depth = obj.enqueuer.depth()
        table.add_row("queue", ", ".join(f"{k} {v}" for k, v in depth.items()))
    except Exception as exc:  # status reports what it can
        table.add_row("queue", f"[red]unavailable: {exc}[/red]")
    table.add_row("held by dead workers", _held_by_dead(obj))
    try:
        n = status_numbers(obj.sessions)
        last = n["last_applied_at"]
        table.add_row(
            "last event applied",
            f"{n['last_event']} at {last:%Y-%m-%d %H:%M:%S %Z}" if last else "none yet",
        )
        if n["last_lag_seconds"] is not None:
            table.add_row("lag (last event)", f"{n['last_lag_seconds']:.2f}s")
        table.add_row(
            "events",
            ", ".join(f"{k} {v}" for k, v in sorted(n["events_by_status"].items())) or "none",
        )
        colour = "red" if n["dead_letters_open"] else "green"
        table.add_row("dead letters", f"[{colour}]{n['dead_letters_open']} open[/{colour}]")
        table.add_row("webhook subscription", _subscription(n["subscription"]))
    except Exception as exc:
        table.add_row("database", f"[red]unavailable: {exc}[/red]")
    try:
        from worker.runtime import make_limiter

        for family, st in make_limiter(obj.services).state().items():
            table.add_row(f"bucket {family}", ", ".join(f"{k} {v}" for k, v in st.items()))
    except Exception as exc:
        table.add_row("rate limiter", f"[red]unavailable: {exc}[/red]")
    table.add_row("mode", "embedded" if settings.embedded else "redis + database")
    table.add_row("brevo", "dry run" if settings.dry_run else settings.brevo.api_url)
    console.print(table)


COMMANDS = [prune, forget, status]
