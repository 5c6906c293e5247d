"""simulate · preview: try the connector with Calendly's payloads, without Calendly."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.services import LazyServices

if TYPE_CHECKING:
    from calendly_brevo.preview import Preview

pass_services = click.make_pass_decorator(LazyServices)

_EVENTS = [
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
    "routing_form_submission.created",
]


def _read_json_file(path: str) -> dict[str, Any]:
    from calendly_brevo.preview import webhook_body

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"{path}: {exc}") from None
    body = webhook_body(data)
    if not isinstance(body, dict):
        raise click.UsageError(f"{path}: expected a JSON object (a Calendly webhook body)")
    return body


def _signing_key(obj: LazyServices, key: str | None) -> str:
    from calendly_brevo.dev_signing_key import dev_key_path
    from calendly_brevo.errors import ConfigError

    if key:
        return key
    settings = obj.settings
    keys = settings.calendly.webhook.keys
    if keys:
        return keys[0]
    if dev_key_path(settings).exists():
        return dev_key_path(settings).read_text().strip()
    raise ConfigError(
        "connectors.calendly.webhook.signing_key",
        "no signing key to sign with",
        "pass --key, set CALENDLY_WEBHOOK_SIGNING_KEY, or start `calendly-brevo run` "
        "first (it creates a development key)",
    )


def _docs(
    obj: LazyServices, event: str | None, email: str, same: bool, options: dict[str, Any]
) -> list[dict[str, Any]]:
    from calendly_brevo.simulate import Cancellation, NoBookingToFollow, build_event, same_booking

    if options["payload"]:
        return [_read_json_file(options["payload"])]
    if event is None:
        raise click.UsageError("name an EVENT, or pass --payload FILE")
    data_dir = obj.settings.storage.data_dir
    if same:
        if event == "routing_form_submission.created":
            raise click.UsageError("--same-booking applies to invitee and no-show events")
        try:
            return same_booking(
                data_dir,
                event,
                email,
                rescheduled=options["rescheduled"],
                reason=options["reason"],
            )
        except NoBookingToFollow as exc:
            raise click.UsageError(
                f"{exc}; run `calendly-brevo simulate invitee.created --email {email}` first"
            ) from None
    return [
        build_event(
            event,
            email=email,
            name=options["name"],
            invitee_uri=options["invitee_uri"],
            event_type_uri=options["event_type_uri"],
            cancel=Cancellation(rescheduled=options["rescheduled"], reason=options["reason"]),
        )
    ]


@click.command()
@click.argument("event", type=click.Choice(_EVENTS), required=False)
@click.option("--email", default="ada@example.com", show_default=True)
@click.option("--name", help="Invitee name (default derived from the email).")
@click.option("--url", help="Receiver URL (default http://HOST:PORT/webhooks/calendly).")
@click.option("--key", envvar="SIMULATE_SIGNING_KEY", help="Signing key (default: configured).")
@click.option("--invitee-uri", help="Reuse an invitee URI (a redelivery of the same event).")
@click.option("--event-type-uri", help="Event type URI (to hit an event_mapping entry).")
@click.option("--rescheduled", is_flag=True, help="For invitee.canceled: part of a reschedule.")
@click.option("--reason", default="", help="For invitee.canceled: cancellation reason.")
@click.option(
    "--same-booking",
    "same",
    is_flag=True,
    help="Act on the booking simulate last created for --email: cancel it, mark or unmark "
    "it as a no-show, or (with invitee.created) reschedule it.",
)
@click.option(
    "--payload",
    type=click.Path(dir_okay=False, exists=True),
    help="Send this Calendly webhook body (or sample_webhook_data answer) instead of an example.",
)
@click.option("--print", "print_only", is_flag=True, help="Print the webhook body, do not send.")
@pass_services
def simulate(
    obj: LazyServices,
    event: str | None,
    email: str,
    name: str | None,
    url: str | None,
    key: str | None,
    invitee_uri: str | None,
    event_type_uri: str | None,
    rescheduled: bool,
    reason: str,
    same: bool,
    payload: str | None,
    print_only: bool,
) -> None:
    """Send a correctly signed example webhook to a running receiver."""
    import httpx

    from calendly_brevo.simulate import remember, send

    settings = obj.settings
    options = {
        "name": name,
        "invitee_uri": invitee_uri,
        "event_type_uri": event_type_uri,
        "rescheduled": rescheduled,
        "reason": reason,
        "payload": payload,
    }
    docs = _docs(obj, event, email, same, options)
    host = settings.server.host if settings.server.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    target = url or f"http://{host}:{settings.server.port}/webhooks/calendly"
    if print_only:
        for doc in docs:
            click.echo(json.dumps(doc, indent=2))
        return
    signing_key = _signing_key(obj, key)
    ok = True
    for doc in docs:
        who = (doc.get("payload") or {}).get("email") or email
        try:
            response = send(target, signing_key, doc)
        except httpx.HTTPError as exc:
            click.secho(
                f"could not reach {target}: {exc}. Is `calendly-brevo run` running?", fg="red"
            )
            sys.exit(1)
        if response.is_success:
            remember(settings.storage.data_dir, doc)
        ok = ok and response.is_success
        click.secho(
            f"{doc.get('event')} for {who} -> {target}: {response.status_code} {response.text}",
            fg="green" if response.is_success else "red",
        )
    sys.exit(0 if ok else 1)


def _print_preview(result: Preview) -> None:
    click.secho(
        f"{result.event_name}" + (f" for {result.email}" if result.email else ""), bold=True
    )
    if result.event_id:
        click.echo(f"  event id   {result.event_id}")
    contact = result.contact
    if contact is None:
        click.echo("  contact    no upsert")
    else:
        click.echo(f"  contact    upsert {contact.email}")
        width = max((len(k) for k in contact.attributes), default=0)
        for name, value in sorted(contact.attributes.items()):
            click.echo(f"    {name.ljust(width)}  {value}")
        add = ", ".join(map(str, contact.list_ids)) or "none"
        remove = ", ".join(map(str, contact.unlink_list_ids)) or "none"
        click.echo(f"  lists      in {add}; out of {remove} (managed lists only)")
    event = result.event
    if event is None:
        click.echo("  event      none")
    else:
        click.echo(f"  event      {event.name} at {event.event_date or 'now'}")
        for name, value in sorted(event.properties.items()):
            click.echo(f"    {name}: {value}")
    for note in result.notes:
        click.echo(f"  note: {note}")


@click.command()
@click.argument("payload", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_services
def preview(obj: LazyServices, payload: str, as_json: bool) -> None:
    """What PAYLOAD (a Calendly webhook body, or a sample_webhook_data answer) would produce in
    Brevo under the current config: attributes, lists, custom event. Touches nothing."""
    from calendly_brevo.errors import UnmappableEvent
    from calendly_brevo.preview import PreviewInputError, load_payload
    from calendly_brevo.preview import preview as compute

    try:
        text = Path(payload).read_text(encoding="utf-8")
        env = load_payload(text)
    except (OSError, UnicodeDecodeError, PreviewInputError) as exc:
        raise click.UsageError(f"{payload}: {exc}") from None
    try:
        result = compute(env, obj.settings.rules)
    except UnmappableEvent as exc:
        message = f"the worker would dead-letter this event ({exc.code}): {exc}"
        if as_json:
            click.echo(json.dumps({"event_name": env.event, "dead_letter": message}))
        else:
            click.secho(message, fg="red", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        _print_preview(result)


COMMANDS = [simulate, preview]
