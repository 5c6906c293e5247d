"""resync: bring Brevo to the projection of the stored state under today's config."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from datetime import datetime
from functools import partial

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from calendly_brevo.durations import When
from calendly_brevo.errors import ConnectorError
from cli.commands.brevo import brevo_client
from cli.commands.resync_drift import check_drift
from cli.commands.resync_held import held_events
from cli.services import LazyServices

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
@click.option(
    "--limit", type=click.IntRange(min=1), help="Push (list, send, check) at most N, then stop."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option(
    "--events",
    is_flag=True,
    help="List the custom events a dry run or a switch held back (sends nothing).",
)
@click.option("--since", type=When(), help="With --events: held since 14d / 2024-05-01.")
@click.option("--send", is_flag=True, help="With --events and --since: send each one once.")
@click.option(
    "--check",
    is_flag=True,
    help="Read contacts back from Brevo; report where they differ from the last push.",
)
@pass_services
def resync(
    obj: LazyServices,
    email: str | None,
    everyone: bool,
    changed: bool,
    dry_run: bool,
    limit: int | None,
    as_json: bool,
    events: bool,
    since: datetime | None,
    send: bool,
    check: bool,
) -> None:
    """Push to Brevo what its contacts lack from the stored state: attributes, list adds, and
    unlinks of lists the connector itself added. Never sends custom events. A second run
    pushes nothing; an interrupted run resumes. Exit 1 when a push failed (see `dlq list`).

    --events lists the custom events held back (dry run, a switch off) and --send sends them,
    each at most once. --check writes nothing and exits 1 when Brevo has drifted."""
    from calendly_brevo.brevo.bulk import update_contacts
    from calendly_brevo.brevo.imports import import_contacts
    from calendly_brevo.logs import configure_logging
    from calendly_brevo.resync import contacts_synced, selected
    from calendly_brevo.resync_bulk import BulkResync

    # The Brevo client's warnings (a 429) go to stderr, redacted: stdout is the summary (--json).
    configure_logging(obj.settings)
    plain = {"--all": everyone, "--changed": changed, "--dry-run": dry_run}
    _check_modes(plain, email=email, events=events, since=since, send=send, check=check)
    if events:
        held_events(obj, since, send, limit, as_json)
        return
    if check:
        check_drift(obj, email, limit, as_json)
        return
    if changed and everyone:
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
        brevo = None if dry_run else stack.enter_context(brevo_client(obj))
        batch = settings.brevo.batch
        # Contacts pushed before: brevo.batch.max_contacts per POST /contacts/batch.
        bulk = None if brevo is None or not batch.enabled else partial(update_contacts, brevo)
        # Contacts never pushed: brevo.batch.max_import per POST /contacts/import.
        imports = None
        if brevo is not None and bulk is not None and batch.max_import:
            wait = batch.import_confirm_seconds
            imports = partial(import_contacts, brevo, confirm_seconds=wait)
        run = BulkResync(
            obj.ledger,
            settings.rules,
            brevo,
            full=everyone,
            limit=limit,
            bulk=bulk,
            page=batch.max_contacts,
            imports=imports,
            import_page=max(batch.max_import, 1),
        )
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


def _check_modes(
    plain: dict[str, bool],
    *,
    email: str | None,
    events: bool,
    since: datetime | None,
    send: bool,
    check: bool,
) -> None:
    """Usage errors: --events and --check are modes of their own (``plain``: the flags of a
    plain resync, by name)."""
    mode = "--events" if events else "--check" if check else None
    clash = [flag for flag, on in plain.items() if on]
    if mode and clash:
        raise click.UsageError(f"{clash[0]} does not go with {mode}")
    if events and check:
        raise click.UsageError("--events and --check exclude each other")
    if (since is not None or send) and not events:
        raise click.UsageError("--since and --send go with --events")
    if events and email:
        raise click.UsageError("--email does not go with --events (it lists every held event)")
