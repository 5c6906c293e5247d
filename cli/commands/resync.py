"""resync: bring Brevo to the projection of the stored state under today's config."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from calendly_brevo.bootstrap import LazyServices
from calendly_brevo.errors import ConnectorError

if TYPE_CHECKING:
    from calendly_brevo.brevo.client import BrevoClient

pass_services = click.make_pass_decorator(LazyServices)


@click.command()
@click.option("--email", help="Only this contact.")
@click.option(
    "--all",
    "everyone",
    is_flag=True,
    help="Push every contact's whole projection, matching or not (repairs hand edits).",
)
@click.option(
    "--changed",
    is_flag=True,
    help="Default: only contacts whose projection differs from the last push.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be pushed; call nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Push at most N contacts, then stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@pass_services
def resync(
    obj: LazyServices,
    email: str | None,
    everyone: bool,
    changed: bool,
    dry_run: bool,
    limit: int | None,
    as_json: bool,
) -> None:
    """Push to Brevo what its contacts lack from the stored state: attributes, list adds, and
    unlinks of lists the connector itself added. Never sends custom events. A second run
    pushes nothing; an interrupted run resumes. Exit 1 when a push failed (see `dlq list`)."""
    from calendly_brevo.resync import Resync, contacts_synced, selected

    if everyone and changed:
        raise click.UsageError("--all and --changed exclude each other")
    settings = obj.settings
    if not contacts_synced(settings.rules):
        raise ConnectorError(
            "contacts are not synced (connectors.calendly.enabled or "
            "connectors.calendly.sync.contacts is false): a resync would push nothing"
        )
    if not dry_run and settings.dry_run:
        raise ConnectorError(
            "Brevo runs dry (no brevo.api_key, or brevo.dry_run: true): a resync would push "
            "nothing. Set the key, or add --dry-run to see what would be pushed."
        )
    emails = list(selected(obj.ledger, email))
    err = Console(stderr=True)
    columns = (TextColumn("resync"), BarColumn(), MofNCompleteColumn())
    with ExitStack() as stack:
        brevo = None if dry_run else stack.enter_context(_brevo_client(obj))
        run = Resync(obj.ledger, settings.rules, brevo, full=everyone, limit=limit)
        progress = stack.enter_context(
            Progress(*columns, console=err, transient=True, disable=as_json)
        )
        task = progress.add_task("resync", total=len(emails))
        summary = run.run(emails, lambda: progress.advance(task))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        for change in summary.contacts if dry_run else ():
            click.echo(
                f"{change['email']}: attributes {sorted(change['attributes']) or '-'}, "
                f"add lists {change['add_lists'] or '-'}, unlink {change['unlink_lists'] or '-'}"
            )
        click.echo(
            f"checked {summary.checked}, changed {summary.changed}"
            + (" (dry run: nothing pushed)" if dry_run else "")
            + f", calls {summary.calls}, failures {summary.failures}"
            + (f" (dead letters {summary.dead_letter_ids})" if summary.failures else "")
        )
    sys.exit(1 if summary.failures else 0)


@contextmanager
def _brevo_client(obj: LazyServices) -> Iterator[BrevoClient]:
    """The workers' Brevo client, on their shared token bucket (Redis when configured)."""
    from calendly_brevo.brevo.client import BrevoClient, make_http_client
    from worker.runtime import make_limiter

    with make_http_client(obj.settings) as http:
        yield BrevoClient.from_settings(obj.settings, make_limiter(obj.services), http=http)
