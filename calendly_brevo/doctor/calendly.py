"""The Calendly checks: the token, its scopes, the webhook subscription, the signing key."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from calendly_brevo.calendly.client import FORBIDDEN_FIX, PAT_URL, UNAUTHORIZED_FIX
from calendly_brevo.calendly.subscription_store import active_signing_keys, remembered
from calendly_brevo.calendly.subscriptions import default_callback_url
from calendly_brevo.doctor.base import Check, DoctorContext
from calendly_brevo.errors import (
    CalendlyAuthError,
    CalendlyForbidden,
    ConfigError,
    ConnectorError,
)


def check_calendly_token(ctx: DoctorContext) -> Check:
    name = "Calendly token"
    try:
        me = ctx.calendly.me()
    except ConfigError as exc:
        return Check(name, "FAIL", exc.problem, exc.allowed)
    except CalendlyAuthError as exc:
        return Check(name, "FAIL", str(exc).split(":", 1)[0], UNAUTHORIZED_FIX)
    except CalendlyForbidden as exc:
        return Check(name, "FAIL", str(exc).split(":", 1)[0], FORBIDDEN_FIX)
    except ConnectorError as exc:
        return Check(name, "FAIL", str(exc), "check CALENDLY_API_URL and the network")
    ctx._cache["me"] = me
    return Check(name, "OK", f"authenticated as {me.get('name') or me.get('uri')}")


def check_calendly_scopes(ctx: DoctorContext) -> Check:
    from calendly_brevo.calendly.scopes import NOT_PROBED, missing_scopes

    name = "Calendly scopes"
    me = ctx._cache.get("me")
    if me is None:
        return Check(name, "WARN", "not checked: the token check failed", None)
    org = ctx.settings.calendly.organization_uri or str(me["current_organization"])
    try:
        missing = missing_scopes(ctx.calendly, org, str(me["uri"]))
    except ConnectorError as exc:
        return Check(name, "WARN", f"not checked: {exc}", None)
    if missing:
        return Check(
            name,
            "FAIL",
            f"Calendly answered 403 without {', '.join(missing)} (inferred from the calls doctor "
            "makes; Calendly does not list a token's scopes)",
            f"create a token with {', '.join(missing)} at {PAT_URL} (README: Calendly scopes)",
        )
    return Check(name, "OK", f"read scopes present; not probed: {', '.join(NOT_PROBED)}")


def _subscriptions(ctx: DoctorContext) -> tuple[list[dict[str, Any]], str | None]:
    me = ctx._cache.get("me") or ctx.calendly.me()
    org = ctx.settings.calendly.organization_uri or str(me["current_organization"])
    subs: list[dict[str, Any]] = []
    for scope, user in (("organization", None), ("user", str(me["uri"]))):
        try:
            subs += ctx.calendly.list_webhook_subscriptions(
                organization=org, scope=scope, user=user
            )
        except CalendlyForbidden:  # a member token cannot list organization subscriptions
            continue
    mine = None
    with contextlib.suppress(SQLAlchemyError, ConnectorError):
        mine = remembered(ctx.sessions_factory())
    url = (mine or {}).get("url") or default_callback_url(ctx.settings.server.public_url)
    return subs, url


def check_subscription(ctx: DoctorContext) -> Check:
    name = "webhook subscription"
    try:
        subs, url = _subscriptions(ctx)
    except ConnectorError as exc:
        return Check(name, "FAIL", f"cannot list subscriptions: {exc}", FORBIDDEN_FIX)
    install = f"calendly-brevo webhooks install --url {url or 'https://<host>/webhooks/calendly'}"
    ours = [s for s in subs if url is None or s.get("callback_url") == url]
    if not ours:
        where = f" for {url}" if url else ""
        return Check(name, "FAIL", f"no webhook subscription{where}", f"run `{install}`")
    sub = next((s for s in ours if s.get("state") == "active"), ours[0])
    if sub.get("state") == "disabled":
        return Check(
            name,
            "FAIL",
            f"{sub.get('callback_url')} is disabled (24 h of failed deliveries)",
            "run `calendly-brevo webhooks check --repair` (Calendly never re-enables it)",
        )
    if sub.get("scope") != "organization":
        return Check(
            name,
            "WARN",
            f"{sub.get('callback_url')} is {sub.get('scope')}-scoped: other members' "
            "bookings are not received",
            f"reinstall with organization scope: `{install}` (needs an owner/admin token)",
        )
    return Check(name, "OK", f"{sub.get('callback_url')} active, organization scope")


def check_signing_key(ctx: DoctorContext) -> Check:
    name = "webhook signing key"
    if ctx.settings.calendly.webhook.keys:
        return Check(name, "OK", "set in the config / CALENDLY_WEBHOOK_SIGNING_KEY")
    try:
        from calendly_brevo.encryption_key import existing_box

        box = existing_box(ctx.settings)  # doctor creates no key file
        stored = active_signing_keys(ctx.sessions_factory(), box) if box is not None else []
    except (ConnectorError, SQLAlchemyError) as exc:
        stored = []
        why = f" (database keys unreadable: {exc})"
    else:
        why = ""
    if stored:
        return Check(name, "OK", f"{len(stored)} key(s) stored by `webhooks install`")
    return Check(
        name,
        "FAIL",
        f"no signing key: every webhook would be refused{why}",
        "set CALENDLY_WEBHOOK_SIGNING_KEY or run `calendly-brevo webhooks install --url …`",
    )
