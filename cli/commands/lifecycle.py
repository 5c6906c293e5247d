"""prune · forget · status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from calendly_brevo.durations import Duration
from cli.services import LazyServices

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
@click.option("--keep-brevo", is_flag=True, help="Do not delete the Brevo contact.")
@pass_services
def forget(obj: LazyServices, email: str, yes: bool, keep_brevo: bool) -> None:
    """Remove what the connector stores about one person, and their Brevo contact (unless
    --keep-brevo). A tombstone keeps their past events from bringing them back."""
    from calendly_brevo.lifecycle import forget as do_forget

    if not yes:
        click.confirm(f"Forget everything stored about {email}?", abort=True)
    import redis

    from calendly_brevo.queue_erasure import RedisWaiting, SqliteWaiting
    from calendly_brevo.queueing import SqliteQueue, sqlite_queue_path

    settings = obj.settings
    redis_url = settings.storage.redis_url
    if redis_url:
        client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
        queue: RedisWaiting | SqliteWaiting = RedisWaiting(client)
        close = client.close
    else:
        sqlite = SqliteQueue(sqlite_queue_path(settings.storage.data_dir))
        queue, close = SqliteWaiting(sqlite), sqlite.close
    try:
        r = do_forget(obj.sessions, email, queue)
    finally:
        close()
    click.echo(
        f"forgot {email}: {r.invitees} invitee record(s), {r.no_shows} no-show mark(s), "
        f"{r.events} event payload(s), {r.dead_letters} dead letter(s), "
        f"{r.queued} queued message(s)."
    )
    if r.held:
        click.echo(
            f"{r.held} message(s) about {email} were being processed by a worker and were left "
            "to finish (they may still update the Brevo contact); run forget again once they "
            "are done.",
            err=True,
        )
    if not keep_brevo:
        _delete_in_brevo(obj, email)


def _delete_in_brevo(obj: LazyServices, email: str) -> None:
    from calendly_brevo.brevo.client import BrevoClient, make_http_client
    from calendly_brevo.events import normalize_email

    settings = obj.settings
    if settings.dry_run:
        click.echo("Brevo runs dry: its contact was not deleted (DELETE /v3/contacts/{email}).")
        return
    with make_http_client(settings) as http:
        client = BrevoClient.from_settings(settings, http=http)
        gone = client.delete_contact(normalize_email(email) or email.strip().lower())
    click.echo("deleted the Brevo contact" if gone else "Brevo had no such contact")


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


def _status_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for name in ("queue", "database", "rate_limiter"):
        part = report[name]
        if not part["ok"] and "error" in part:
            fix = f"; fix: {part['fix']}" if part.get("fix") else ""
            rows.append((name.replace("_", " "), f"[red]unavailable: {part['error']}{fix}[/red]"))
    queue = report["queue"]
    if queue["ok"]:
        note = f" ({queue['note']})" if queue.get("note") else ""
        depth = f"ready {queue['ready']}, delayed {queue['delayed']}, dead {queue['dead']}"
        rows.append(("queue", depth + note))
    held = report["held_by_dead_workers"]
    if "detail" in held:
        fix = f"; fix: {held['fix']}" if held.get("fix") else ""
        colour = "red" if fix else ("yellow" if held["messages"] else "green")
        rows.append(("held by dead workers", f"[{colour}]{held['detail']}{fix}[/{colour}]"))
    else:
        rows.append(("held by dead workers", f"[red]unavailable: {held['error']}[/red]"))
    db = report["database"]
    if db["ok"]:
        last = db["last_applied_at"]
        when = f"{db['last_event']} at {last[:19].replace('T', ' ')} UTC" if last else "none yet"
        rows.append(("last event applied", when))
        if db["last_lag_seconds"] is not None:
            rows.append(("lag (last event)", f"{db['last_lag_seconds']:.2f}s"))
        reasons = db.get("suppressed_by_reason") or {}
        events = ", ".join(
            f"{k} {v}" + (_reasons(reasons) if k == "suppressed" and reasons else "")
            for k, v in db["events_by_status"].items()
        )
        rows.append(("events", events or "none"))
        colour = "red" if db["dead_letters_open"] else "green"
        rows.append(("dead letters", f"[{colour}]{db['dead_letters_open']} open[/{colour}]"))
        rows.append(("webhook subscription", _subscription(db["subscription"])))
        stale = db["stale_contacts"]
        rows.append(
            (
                "stale contacts",
                f"[yellow]{stale} pushed under an earlier mapping; fix: `calendly-brevo resync`"
                "[/yellow]"
                if stale
                else "none",
            )
        )
    limiter = report["rate_limiter"]
    if limiter["ok"] and limiter["buckets"] is None:
        rows.append(("rate limiter", "in the running process (embedded mode)"))
    elif limiter["ok"]:
        for family, st in limiter["buckets"].items():
            rows.append((f"bucket {family}", ", ".join(f"{k} {_num(v)}" for k, v in st.items())))
    rows.append(("mode", report["mode"]))
    brevo = report["brevo"]
    rows.append(("brevo", "[yellow]dry run[/yellow]" if brevo["dry_run"] else brevo["api_url"]))
    return rows


def _reasons(reasons: dict[str, int]) -> str:
    return " (" + ", ".join(f"{k} {v}" for k, v in reasons.items()) + ")"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_services
def status(obj: LazyServices, as_json: bool) -> None:
    """Queue depth, lag, last event applied, dead letters, rate-limit bucket, subscription.

    Exit 0 when healthy, 1 when the store, queue or rate limiter cannot be reached. Reads
    only: creates no file (a missing embedded store is reported, not created)."""
    import json
    import sys

    from calendly_brevo.status import status_report

    obj.read_only = True
    report = status_report(obj.settings, obj)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        table = Table("what", "value", show_header=False, box=None)
        for row in _status_rows(report):
            table.add_row(*row)
        Console().print(table)
    sys.exit(0 if report["healthy"] else 1)


COMMANDS = [prune, forget, status]
