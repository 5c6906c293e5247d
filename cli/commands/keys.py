"""keys rotate: re-encrypt the stored secrets under the first encryption key."""

from __future__ import annotations

import json

import click

from cli.services import LazyServices

pass_services = click.make_pass_decorator(LazyServices)


@click.group()
def keys() -> None:
    """Manage the encryption of stored secrets (CONNECTOR_ENCRYPTION_KEY)."""


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
@pass_services
def rotate(obj: LazyServices, as_json: bool) -> None:
    """Re-encrypt OAuth tokens and signing keys under the first key, so older keys can go."""
    from calendly_brevo.encryption_key import load_box
    from calendly_brevo.rotation import rotate_secrets

    result = rotate_secrets(obj.sessions, load_box(obj.settings))
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    click.echo(
        f"re-encrypted {result.oauth_tokens} OAuth token row(s) and {result.signing_keys} "
        "signing key(s) under the first key of CONNECTOR_ENCRYPTION_KEY; "
        "the keys after it can now be removed"
    )
