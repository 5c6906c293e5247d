"""``resync --check``: drift between Brevo and the connector's last push, read back and
reported; nothing is written. The plain ``resync`` is :mod:`cli.commands.resync`."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from cli.commands.brevo import brevo_client, require_key
from cli.services import LazyServices


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
