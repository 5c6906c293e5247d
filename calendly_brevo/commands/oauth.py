"""oauth connect-url: print a one-time link that starts the Calendly OAuth connection.

The start is on the receiver's admin port, which is not on the internet: the link points at
``http://127.0.0.1:<admin_port>`` (what ``kubectl port-forward`` or docker compose give the
operator) unless ``--base-url`` names another way in. Calendly then redirects the browser to the
public callback (``PUBLIC_URL``/``CALENDLY_REDIRECT_URI``).
"""

from __future__ import annotations

import click

from calendly_brevo.bootstrap import LazyServices
from calendly_brevo.config import Settings

pass_services = click.make_pass_decorator(LazyServices)


@click.group()
def oauth() -> None:
    """Connect Calendly through OAuth."""


def _admin_base_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.server.admin_port}"


@oauth.command("connect-url")
@click.option(
    "--replace",
    is_flag=True,
    help="Allow connecting another Calendly account than the one connected now.",
)
@click.option(
    "--base-url",
    help="How your browser reaches the receiver's admin port "
    "(default http://127.0.0.1:ADMIN_PORT, e.g. through kubectl port-forward).",
)
@pass_services
def connect_url(obj: LazyServices, replace: bool, base_url: str | None) -> None:
    """Print a one-time link (valid 15 minutes) that starts the Calendly OAuth flow."""
    from calendly_brevo.calendly.connect import LINK_TTL, issue_link

    obj.settings.require("connectors.calendly.oauth.client_id")
    admin_port = obj.settings.server.admin_port
    url = issue_link(obj.sessions, base_url or _admin_base_url(obj.settings), replace=replace)
    click.echo(url)
    note = " It may replace the connected Calendly account." if replace else ""
    click.echo(f"Open it within {LINK_TTL // 60} minutes; it works once.{note}", err=True)
    if base_url is None:
        click.echo(
            f"The link opens the receiver's admin port {admin_port}; in Kubernetes first run "
            f"`kubectl port-forward svc/calendly-brevo-receiver {admin_port}`.",
            err=True,
        )
