"""``resync --events``: the custom events a dry run or a switch held back, listed; with
``--send``, each sent once (:mod:`calendly_brevo.held_send`). The plain ``resync`` is
:mod:`cli.commands.resync`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from cli.commands.brevo import brevo_client, require_key
from cli.services import LazyServices

if TYPE_CHECKING:
    from calendly_brevo.held import HeldEvent


def held_events(
    obj: LazyServices, since: datetime | None, send: bool, limit: int | None, as_json: bool
) -> None:
    """List the held custom events; with ``send``, send each once. Exit 1 when a send failed."""
    from calendly_brevo.held import held_events
    from calendly_brevo.held_send import HeldSender

    if send:
        if since is None:
            raise click.UsageError(
                "--send needs --since DATE: how far back a held event may still start an "
                "automation (e.g. --since 2024-05-01 or --since 14d)"
            )
        require_key(obj, "--send")
    held = list(held_events(obj.ledger, obj.settings, since, limit))
    if not send:
        _show_held(held, since, as_json)
        return
    from worker.runtime import BucketLookupBudget, make_limiter

    with brevo_client(obj) as brevo:
        sender = HeldSender(
            obj.ledger, obj.settings, brevo, BucketLookupBudget(make_limiter(obj.services))
        )
        for event in held:
            sender.send(event)
    summary = sender.summary
    if as_json:
        out = summary.as_dict() | {"events": [h.as_dict() for h in held]}
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        click.echo(
            f"held custom events {summary.listed}: sent {summary.sent}, skipped "
            f"{summary.skipped} (sent meanwhile), failures {summary.failures}"
        )
        for error in summary.errors:
            click.echo(f"  failed {error}")
    sys.exit(1 if summary.failures else 0)


def _show_held(held: list[HeldEvent], since: datetime | None, as_json: bool) -> None:
    when = since.date().isoformat() if since is not None else None
    if as_json:
        out = {"since": since, "count": len(held), "events": [h.as_dict() for h in held]}
        click.echo(json.dumps(out, indent=2, default=str))
        return
    table = Table("held at", "event id", "calendly event", "brevo event", "status", "email")
    for h in held:
        status = h.status + (f" ({h.reason})" if h.reason else "")
        status += ", in doubt" if h.in_doubt else ""
        table.add_row(
            h.held_at.strftime("%Y-%m-%d %H:%M"),
            h.event_id[:12],
            h.calendly_event,
            h.brevo_event,
            status,
            h.email,
        )
    if held:
        Console(width=160).print(table)
    click.echo(
        f"{len(held)} held custom event(s)"
        + (f" since {when}" if when else "")
        + ". "
        + (
            f"`calendly-brevo resync --events --since {when or 'DATE'} --send` sends each once "
            "(their automations start)."
            if held
            else "Nothing to send."
        )
    )
