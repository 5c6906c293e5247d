"""``resync --events`` (held custom events, listed; sent with ``--send``) and ``resync --check``
(drift between Brevo and the last push). The plain ``resync`` is :mod:`cli.commands.resync`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from calendly_brevo.bootstrap import LazyServices
from calendly_brevo.errors import ConnectorError

if TYPE_CHECKING:
    from calendly_brevo.brevo.client import BrevoClient
    from calendly_brevo.held import HeldEvent


@contextmanager
def brevo_client(obj: LazyServices) -> Iterator[BrevoClient]:
    """The workers' Brevo client, on their shared token bucket (Redis when configured)."""
    from calendly_brevo.brevo.client import BrevoClient, make_http_client
    from worker.runtime import make_limiter

    with make_http_client(obj.settings) as http:
        yield BrevoClient.from_settings(obj.settings, make_limiter(obj.services), http=http)


def require_key(obj: LazyServices, plan_flag: str) -> None:
    if obj.settings.dry_run:
        raise ConnectorError(
            "Brevo runs dry (no brevo.api_key, or brevo.dry_run: true): nothing can be sent. "
            f"Set the key, or leave out {plan_flag} to see what would be."
        )


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


def check_drift(obj: LazyServices, email: str | None, limit: int | None, as_json: bool) -> None:
    """Read contacts back from Brevo and report drift; write nothing. Exit 1 on drift."""
    from calendly_brevo.drift import DriftCheck
    from calendly_brevo.resync import selected

    require_key(obj, "--check")
    emails = list(selected(obj.ledger, email))
    columns = (TextColumn("check"), BarColumn(), MofNCompleteColumn())
    with ExitStack() as stack:
        brevo = stack.enter_context(brevo_client(obj))
        err = Console(stderr=True)
        progress = stack.enter_context(
            Progress(*columns, console=err, transient=True, disable=as_json)
        )
        task = progress.add_task("check", total=len(emails))
        summary = DriftCheck(obj.ledger, obj.settings, brevo, limit=limit).run(
            emails, lambda: progress.advance(task)
        )
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        for d in summary.drift:
            parts = ["deleted in Brevo"] if d.deleted else []
            parts += [f"{k}: pushed {p!r}, Brevo {b!r}" for k, (p, b) in d.attributes.items()]
            parts += [f"not on list {i}" for i in d.lists_missing]
            parts += [f"on list {i} the connector did not add" for i in d.lists_extra]
            click.echo(f"{d.email}: " + "; ".join(parts))
        click.echo(
            f"checked {summary.checked}, drifted {summary.drifted}, failures {summary.failures}"
            + (
                " (`calendly-brevo resync --all` restores attributes, lists and deleted "
                "contacts; it never unlinks a list the connector did not add)"
                if summary.drifted
                else ""
            )
        )
        for error in summary.errors:
            click.echo(f"  failed {error}")
    sys.exit(1 if summary.drifted or summary.failures else 0)
