"""trace: one person's timeline (what happened to ada@example.com?)."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from calendly_brevo.trace import Trace
from cli.services import LazyServices

pass_services = click.make_pass_decorator(LazyServices)


def _print(t: Trace) -> None:
    console = Console()
    console.print(f"[bold]{t.email}[/bold]")
    if t.projection:
        p = t.projection
        console.print(f"what Brevo should hold: status {p['status']}")
        for name, value in sorted(p["attributes"].items()):
            console.print(f"  {name}: {value}", markup=False, highlight=False)
        ins = ", ".join(map(str, p["list_ids"])) or "none"
        outs = ", ".join(map(str, p["unlink_list_ids"])) or "none"
        console.print(f"  lists: in {ins}; out of {outs}")
    if t.last_pushed:
        lp = t.last_pushed
        lists = ", ".join(map(str, lp["list_ids"])) or "none"
        console.print(
            f"last pushed to Brevo: {lp['pushed_at'][:19].replace('T', ' ')} UTC "
            f"(event {str(lp['event_id'] or '-')[:12]}), lists {lists}",
            markup=False,
        )
    else:
        console.print("last pushed to Brevo: nothing recorded")
    bookings = Table("start", "event type", "status", "invitee", title="bookings")
    bookings.columns[3].overflow = "fold"  # the whole URI: --invitee-uri takes it
    for b in t.bookings:
        flags = " (rescheduled)" if b.rescheduled else ""
        flags += " no-show" if b.no_show else ""
        bookings.add_row(b.start_time or "-", b.event_type or "-", b.status + flags, b.invitee_uri)
    console.print(bookings)
    _print_deliveries(console, t)
    _print_calls(console, t)
    for dl in t.dead_letters:
        how = dl.replay or ("replayed" if dl.replayed_at else "payload pruned")
        console.print(f"dead letter {dl.id}: {dl.event_name} {dl.reason}: {dl.error} ({how})")


def _print_deliveries(console: Console, t: Trace) -> None:
    """Two lines per event (a table of eight columns does not fit a terminal)."""
    console.print("[bold]events received[/bold]")
    for d in t.deliveries:
        tries = f"{d.attempts} {'try' if d.attempts == 1 else 'tries'}"
        outcome = f"{d.status} ({tries})" + (f": {d.last_error}" if d.last_error else "")
        when = (d.received_at or "-")[:19].replace("T", " ")
        effects = ", ".join(sorted(d.effects)) or "none"
        signed = {"unknown": "signing key not recorded"}.get(d.signature_key, "")
        if not signed:
            none = d.signature_key.startswith("none")
            signed = "no signature" if none else f"signed with {d.signature_key}"
        console.print(
            f"  {when}  {d.event_name}  {outcome}  event {d.event_id[:12]}\n"
            f"      {d.source}, {signed}; Brevo effects: {effects}",
            markup=False,
            highlight=False,
        )


def _print_calls(console: Console, t: Trace) -> None:
    if not t.brevo_calls:
        console.print("Brevo calls: none recorded")
        return
    calls = Table("at", "event", "try", "call", "status", "ms", title="Brevo calls")
    for c in t.brevo_calls:
        calls.add_row(
            str(c.get("at", ""))[:23].replace("T", " "),
            str(c.get("event_name", "")),
            str(c.get("attempt", "")),
            f"{c.get('method', '')} {c.get('route', '')}",
            str(c.get("status", "")),
            str(c.get("ms", "")),
        )
    console.print(calls)


@click.command()
@click.option("--email", help="The person's email (matched as the worker keys contacts).")
@click.option("--event-id", help="An event id from a log line or `dlq list`.")
@click.option("--invitee-uri", help="A Calendly invitee URI.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_services
def trace(
    obj: LazyServices,
    email: str | None,
    event_id: str | None,
    invitee_uri: str | None,
    as_json: bool,
) -> None:
    """One person's timeline: events received (with the signing key that verified each) and
    their outcomes, every Brevo call made for them with its status, bookings, what Brevo should
    hold and was last pushed, dead letters and how to replay them. Exit 1 when nothing is
    stored about them."""
    from calendly_brevo.trace import trace as find

    if not (email or event_id or invitee_uri):
        raise click.UsageError("name a person: --email, --event-id or --invitee-uri")
    obj.read_only = True
    found = find(
        obj.sessions,
        obj.settings.rules,
        email=email,
        event_id=event_id,
        invitee_uri=invitee_uri,
        last_pushed=obj.ledger.last_pushed,
    )
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2, default=str))
    elif found.found:
        _print(found)
    else:
        click.echo(f"nothing stored about {email or event_id or invitee_uri}", err=True)
    sys.exit(0 if found.found else 1)


COMMANDS = [trace]
