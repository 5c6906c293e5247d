"""oauth connect-url: print a one-time link that starts the Calendly OAuth connection.

The link is on the public OAuth callback (``CALENDLY_REDIRECT_URI``, or ``PUBLIC_URL`` +
``/oauth/calendly/callback``), which the operator's browser reaches without the admin port; it
works once, within 15 minutes (see :mod:`calendly_brevo.calendly.connect`).
"""

from __future__ import annotations

import click

from cli.services import LazyServices

pass_services = click.make_pass_decorator(LazyServices)


@click.group()
def oauth() -> None:
    """Connect Calendly through OAuth."""


@oauth.command("connect-url")
@click.option(
    "--replace",
    is_flag=True,
    help="Allow connecting another Calendly account than the one connected now.",
)
@pass_services
def connect_url(obj: LazyServices, replace: bool) -> None:
    """Print a one-time link (valid 15 minutes) that starts the Calendly OAuth flow."""
    from calendly_brevo.calendly.connect import LINK_TTL, issue_link
    from calendly_brevo.calendly.oauth import redirect_uri

    obj.settings.require("connectors.calendly.oauth.client_id")
    url = issue_link(obj.sessions, redirect_uri(obj.settings), replace=replace)
    click.echo(url)
    note = " It may replace the connected Calendly account." if replace else ""
    click.echo(f"Open it within {LINK_TTL // 60} minutes; it works once.{note}", err=True)
