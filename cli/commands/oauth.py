"""oauth connect-url: print a one-time link that starts the Calendly OAuth connection."""

from __future__ import annotations

import click

from calendly_brevo.bootstrap import LazyServices
from calendly_brevo.calendly.oauth import CALLBACK_PATH
from calendly_brevo.config import Settings
from calendly_brevo.errors import ConfigError

pass_services = click.make_pass_decorator(LazyServices)


@click.group()
def oauth() -> None:
    """Connect Calendly through OAuth."""


def _base_url(settings: Settings) -> str:
    """Where the receiver is reached: PUBLIC_URL, else the OAuth redirect URI's origin."""
    if settings.server.public_url:
        return settings.server.public_url
    redirect = settings.calendly.oauth.redirect_uri or ""
    if redirect.endswith(CALLBACK_PATH):
        return redirect[: -len(CALLBACK_PATH)]
    raise ConfigError(
        "server.public_url", "is needed for a connect link", "set PUBLIC_URL (the receiver's URL)"
    )


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

    obj.settings.require("connectors.calendly.oauth.client_id")
    url = issue_link(obj.sessions, _base_url(obj.settings), replace=replace)
    click.echo(url)
    note = " It may replace the connected Calendly account." if replace else ""
    click.echo(f"Open it within {LINK_TTL // 60} minutes; it works once.{note}", err=True)
