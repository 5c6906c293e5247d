"""The ``calendly-brevo`` command. Subcommands decode options, call plain functions, and turn
errors into one clear line and an exit code. Heavy imports happen inside the commands, so
``calendly-brevo --help`` is fast and the worker can switch prometheus-client to multiprocess
mode before anything imports it.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from calendly_brevo.errors import ConfigError, ConnectorError


class Group(click.Group):
    """Print our own errors as one line (with the key path for config errors), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            if exc.allowed:
                click.echo(f"fix: {exc.allowed}", err=True)
            sys.exit(2)
        except ConnectorError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="CONNECTOR_CONFIG",
    type=click.Path(dir_okay=False),
    help="YAML config file (env CONNECTOR_CONFIG). Environment variables override it.",
)
@click.version_option(package_name="calendly-brevo")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Keep Brevo in step with Calendly: bookings, cancellations, reschedules, no-shows."""
    from calendly_brevo.bootstrap import LazyServices

    ctx.obj = LazyServices(config_path)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from calendly_brevo.commands import core, dlq, lifecycle

    for module in (core, dlq, lifecycle):
        for command in module.COMMANDS:
            cli.add_command(command)
    try:
        from calendly_brevo.commands import calendly as calendly_commands
    except ImportError:  # pragma: no cover - during partial checkouts only
        return
    for command in getattr(calendly_commands, "COMMANDS", ()):
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="calendly-brevo")
