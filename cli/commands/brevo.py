"""brevo setup · brevo check, and the Brevo client of the commands that call Brevo (``resync``
and its modes, :mod:`cli.commands.resync_held`, :mod:`cli.commands.resync_drift`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import click

from calendly_brevo.errors import ConnectorError
from cli.services import LazyServices

if TYPE_CHECKING:
    from calendly_brevo.brevo.client import BrevoClient

pass_services = click.make_pass_decorator(LazyServices)
T = TypeVar("T")


@click.group()
def brevo() -> None:
    """Prepare and check the Brevo account for the configured mapping."""


def _client(obj: LazyServices):  # type: ignore[no-untyped-def]
    """A client on the workers' shared bucket, so set-up calls never push them into a 429."""
    from calendly_brevo.brevo.client import BrevoClient
    from worker.runtime import make_limiter

    obj.settings.require("brevo.api_key")
    return BrevoClient.from_settings(obj.settings, make_limiter(obj.services))


@contextmanager
def brevo_client(obj: LazyServices) -> Iterator[BrevoClient]:
    """The workers' Brevo client, on their shared token bucket (Redis when configured)."""
    from calendly_brevo.brevo.client import BrevoClient, make_http_client
    from worker.runtime import make_limiter

    with make_http_client(obj.settings) as http:
        client = BrevoClient.from_settings(obj.settings, make_limiter(obj.services), http=http)
        try:
            yield client
        finally:
            client.close()  # its wire's connections too


def require_key(obj: LazyServices, plan_flag: str) -> None:
    if obj.settings.dry_run:
        raise ConnectorError(
            "Brevo runs dry (no brevo.api_key, or brevo.dry_run: true): nothing can be sent. "
            f"Set the key, or leave out {plan_flag} to see what would be."
        )


def _patiently(obj: LazyServices, call: Callable[[], T]) -> T:
    """Wait out 5xx, 429 and timeouts for ``brevo.startup_wait_seconds`` (creating an attribute
    twice is harmless: the second run finds it). Past that, fail and say what we waited for."""
    from calendly_brevo.brevo.patience import wait_out
    from calendly_brevo.errors import TransientError

    budget = obj.settings.brevo.startup_wait_seconds
    try:
        return wait_out(call, what="Brevo's attributes and lists", budget_seconds=budget)
    except TransientError as exc:
        raise click.ClickException(
            f"Brevo kept answering with a transient error for {budget:.0f}s "
            f"(brevo.startup_wait_seconds): {exc}. Try again later."
        ) from exc


@brevo.command()
@pass_services
def setup(obj: LazyServices) -> None:
    """Create the attributes the mapping writes (text, date) and check the mapped lists exist."""
    from calendly_brevo.brevo.setup import apply_setup

    client = _client(obj)
    try:
        created, report = _patiently(obj, lambda: apply_setup(client, obj.settings))
    finally:
        client.close()
    for name in created:
        click.echo(f"created attribute {name}")
    click.secho(report.describe(), fg="green" if report.ok else "red")
    sys.exit(0 if report.ok else 1)


@brevo.command()
@pass_services
def check(obj: LazyServices) -> None:
    """Report what the mapping needs that Brevo does not have (exit 1 if anything)."""
    from calendly_brevo.brevo.setup import check_setup

    client = _client(obj)
    try:
        report = _patiently(obj, lambda: check_setup(client, obj.settings))
    finally:
        client.close()
    click.secho(report.describe(), fg="green" if report.ok else "red")
    sys.exit(0 if report.ok else 1)


COMMANDS = [brevo]
