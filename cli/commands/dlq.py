"""dlq list · show · replay · purge: the dead letters of the ledger (replay:
:mod:`calendly_brevo.replay`)."""

from __future__ import annotations

import json
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table

from calendly_brevo.durations import When
from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.replay import replay
from cli.services import LazyServices

pass_services = click.make_pass_decorator(LazyServices)


def filter_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--event", help="Only this event name (e.g. invitee.created).")(f)
    f = click.option("--error", help="Only rows whose reason or error contains this text.")(f)
    f = click.option("--since", type=When(), help="Only rows newer than 24h / 2024-01-01.")(f)
    return f


@click.group()
def dlq() -> None:
    """Inspect and replay events that failed permanently or ran out of retries."""


@dlq.command("list")
@filter_options
@click.option("--all", "include_replayed", is_flag=True, help="Include rows already replayed.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_services
def list_cmd(
    obj: LazyServices,
    event: str | None,
    error: str | None,
    since: datetime | None,
    include_replayed: bool,
    limit: int,
    as_json: bool,
) -> None:
    obj.read_only = True
    rows = obj.ledger.dead_letters(
        DeadLetterFilter(event=event, error=error, since=since, include_replayed=include_replayed),
        limit,
    )
    if as_json:
        for r in rows:
            click.echo(
                json.dumps(
                    {
                        "id": r.id,
                        "event_id": r.event_id,
                        "event": r.event_name,
                        "reason": r.reason,
                        "error": r.error,
                        "attempts": r.attempts,
                        "created_at": r.created_at.isoformat(),
                        "replayed_at": r.replayed_at.isoformat() if r.replayed_at else None,
                    }
                )
            )
        return
    table = Table("id", "created", "event", "reason", "attempts", "error", "replayed")
    for r in rows:
        table.add_row(
            str(r.id),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.event_name or "?",
            r.reason,
            str(r.attempts),
            (r.error[:70] + "…") if len(r.error) > 70 else r.error,
            "yes" if r.replayed_at else "",
        )
    Console().print(table)
    click.echo(f"{len(rows)} dead letter(s)")


@dlq.command()
@click.argument("dl_id", type=int)
@pass_services
def show(obj: LazyServices, dl_id: int) -> None:
    """Show one dead letter with its raw event (contains the invitee's data)."""
    obj.read_only = True
    row = obj.ledger.dead_letter_by_id(dl_id)
    if row is None:
        raise click.ClickException(f"no dead letter with id {dl_id}")
    try:
        payload = json.loads(row.payload)
    except ValueError:
        payload = row.payload
    click.echo(
        json.dumps(
            {
                "id": row.id,
                "event_id": row.event_id,
                "event": row.event_name,
                "reason": row.reason,
                "error": row.error,
                "attempts": row.attempts,
                "source": row.source,
                "received_at": row.received_at.isoformat() if row.received_at else None,
                "created_at": row.created_at.isoformat(),
                "replayed_at": row.replayed_at.isoformat() if row.replayed_at else None,
                "payload": payload,
            },
            indent=2,
            ensure_ascii=False,
        )
    )


@dlq.command("replay")
@click.argument("ids", type=int, nargs=-1)
@filter_options
@click.option("--all", "everything", is_flag=True, help="Replay every open dead letter.")
@click.option("--json", "as_json", is_flag=True, help='Print {"replayed": [ids]}.')
@pass_services
def replay_cmd(
    obj: LazyServices,
    ids: tuple[int, ...],
    event: str | None,
    error: str | None,
    since: datetime | None,
    everything: bool,
    as_json: bool,
) -> None:
    """Re-run dead letters through the normal pipeline (dedup makes it safe to repeat)."""
    if not (ids or event or error or since or everything):
        raise click.UsageError("name IDs, a filter (--event/--error/--since) or --all")
    done = replay(
        obj.ledger, obj.enqueuer, DeadLetterFilter(ids=ids, event=event, error=error, since=since)
    )
    if as_json:
        click.echo(json.dumps({"replayed": done}))
        return
    click.echo(f"replayed {len(done)} dead letter(s): {', '.join(map(str, done)) or '-'}")


@dlq.command("purge")
@click.argument("ids", type=int, nargs=-1)
@filter_options
@click.option("--all", "everything", is_flag=True, help="Purge every dead letter.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help='Print {"purged": count}.')
@pass_services
def purge_cmd(
    obj: LazyServices,
    ids: tuple[int, ...],
    event: str | None,
    error: str | None,
    since: datetime | None,
    everything: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete dead letters for good (their raw events included)."""
    if not (ids or event or error or since or everything):
        raise click.UsageError("name IDs, a filter (--event/--error/--since) or --all")
    f = DeadLetterFilter(ids=ids, event=event, error=error, since=since, include_replayed=True)
    if not yes:
        click.confirm("Delete the matching dead letters and their payloads?", abort=True)
    purged = obj.ledger.purge_dead_letters(f)
    click.echo(json.dumps({"purged": purged}) if as_json else f"purged {purged} dead letter(s)")


COMMANDS = [dlq]
