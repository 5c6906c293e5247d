"""The ``calendly-brevo`` command. Subcommands decode options, call plain functions, and turn
errors into one clear line and an exit code. Heavy imports happen inside the commands, so
``calendly-brevo --help`` is fast and the worker can switch prometheus-client to multiprocess
mode before anything imports it.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from calendly_brevo.errors import ConfigError, ConnectorError, ServiceUnavailable

#: Command name → "module:attribute". Imported only when that command runs, so ``--help`` is
#: fast and nothing imports prometheus-client before the worker sets its multiprocess mode.
COMMANDS: dict[str, str] = {
    "run": "cli.commands.core:run",
    "receiver": "cli.commands.core:receiver",
    "worker": "cli.commands.core:worker",
    "migrate": "cli.commands.core:migrate",
    "simulate": "cli.commands.simulate:simulate",
    "preview": "cli.commands.simulate:preview",
    "trace": "cli.commands.trace:trace",
    "resync": "cli.commands.resync:resync",
    "dlq": "cli.commands.dlq:dlq",
    "status": "cli.commands.lifecycle:status",
    "prune": "cli.commands.lifecycle:prune",
    "forget": "cli.commands.lifecycle:forget",
    "brevo": "cli.commands.brevo:brevo",
    "webhooks": "cli.commands.webhooks:webhooks",
    "backfill": "cli.commands.backfill:backfill",
    "reconcile": "cli.commands.backfill:reconcile",
    "links": "cli.commands.calendly:links",
    "doctor": "cli.commands.doctor:doctor",
    "keys": "cli.commands.keys:keys",
    "oauth": "cli.commands.oauth:oauth",
}


class Group(click.Group):
    """Lazy subcommands; our own errors printed as one line (with the key path for config
    errors), not a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        if cmd_name != "worker":
            # Only the worker aggregates several processes' metrics; every other command keeps
            # its metrics in memory (and must not write files into the worker's directory).
            # This runs before the command's module (and so prometheus-client) is imported.
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            # The fix on its own line, not repeated in the error's "(allowed: …)".
            click.secho(f"error: config error at {exc.path}: {exc.problem}", fg="red", err=True)
            if exc.allowed:
                click.echo(f"fix: {exc.allowed}", err=True)
            sys.exit(2)
        except ServiceUnavailable as exc:
            _unavailable(exc)
        except ConnectorError as exc:
            # A Brevo or Calendly client error caused by no connection at all says so, with
            # the fix; any other is its own one line.
            found = _connection_failure(ctx, exc)
            if found is not None:
                _unavailable(found)
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)
        except Exception as exc:
            # A driver's connection error becomes one line with the fix; anything else is a
            # bug and keeps its traceback.
            found = _connection_failure(ctx, exc)
            if found is None:
                raise
            _unavailable(found)


def _connection_failure(ctx: click.Context, exc: BaseException) -> ServiceUnavailable | None:
    from calendly_brevo.unreachable import describe

    return describe(exc, getattr(ctx.obj, "_settings", None))


def _unavailable(exc: ServiceUnavailable) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    click.echo(f"fix: {exc.fix}", err=True)
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
    from cli.services import LazyServices

    if os.environ.get("NO_COLOR"):  # https://no-color.org: any non-empty value
        ctx.color = False

    ctx.obj = LazyServices(config_path or None)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    cli(prog_name="calendly-brevo")
