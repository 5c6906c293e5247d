"""brevo setup · brevo check."""

from __future__ import annotations

import sys

import click

from calendly_brevo.bootstrap import LazyServices

pass_services = click.make_pass_decorator(LazyServices)


@click.group()
def brevo() -> None:
    """Prepare and check the Brevo account for the configured mapping."""


def _client(obj: LazyServices):  # type: ignore[no-untyped-def]
    """A client on the workers' shared bucket, so set-up calls never push them into a 429."""
    from calendly_brevo.brevo.client import BrevoClient
    from worker.runtime import make_limiter

    obj.settings.require("brevo.api_key")
    return BrevoClient.from_settings(obj.settings, make_limiter(obj.services))


@brevo.command()
@pass_services
def setup(obj: LazyServices) -> None:
    """Create the attributes the mapping writes (text, date) and check the mapped lists exist."""
    from calendly_brevo.brevo.setup import apply_setup

    created, report = apply_setup(_client(obj), obj.settings)
    for name in created:
        click.echo(f"created attribute {name}")
    click.secho(report.describe(), fg="green" if report.ok else "red")
    sys.exit(0 if report.ok else 1)


@brevo.command()
@pass_services
def check(obj: LazyServices) -> None:
    """Report what the mapping needs that Brevo does not have (exit 1 if anything)."""
    from calendly_brevo.brevo.setup import check_setup

    report = check_setup(_client(obj), obj.settings)
    click.secho(report.describe(), fg="green" if report.ok else "red")
    sys.exit(0 if report.ok else 1)


COMMANDS = [brevo]
