"""``calendly-brevo doctor``: the seed's troubleshooting table as checks.

Each check is a small function ``(DoctorContext) -> Check`` so tests call them one by one; the
command runs :data:`CHECKS` in order and prints ``OK`` / ``WARN`` / ``FAIL`` with the fix. A check
never raises for the condition it checks: it reports it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly import CalendlyClient, make_client
from calendly_brevo.calendly.client import FORBIDDEN_FIX, PAT_URL, UNAUTHORIZED_FIX
from calendly_brevo.calendly.subscriptions import (
    active_signing_keys,
    default_callback_url,
    remembered,
)
from calendly_brevo.config import Settings
from calendly_brevo.errors import (
    CalendlyAuthError,
    CalendlyForbidden,
    ConfigError,
    ConnectorError,
    ServiceUnavailable,
)

Status = Literal["OK", "WARN", "FAIL"]
IP_FIX = (
    "Brevo blocks unknown IP addresses: allow this machine's egress IP at "
    "https://app.brevo.com/security/authorised-ips (or turn IP blocking off)"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass
class DoctorContext:
    settings: Settings
    http: httpx.Client
    engine_factory: Callable[[], Engine]
    sessions_factory: Callable[[], sessionmaker[Session]]
    redis_ping: Callable[[], bool] | None = None
    #: The Redis client, for the dead-worker check (``None``: embedded, or not reachable).
    redis_client: Callable[[], Any] | None = None
    #: How the Brevo checks wait between retries of a transient answer (tests pass their own).
    sleep: Callable[[float], None] = time.sleep
    _cache: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def calendly(self) -> CalendlyClient:
        try:
            sessions = self.sessions_factory()
        except (SQLAlchemyError, ConnectorError):
            sessions = None
        return make_client(self.settings, self.http, sessions)

    def brevo_get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """``GET`` a Brevo path, waiting out 5xx, 429 and timeouts for
        ``brevo.startup_wait_seconds``; past that, the last answer (or error) is the result."""
        from calendly_brevo.brevo.patience import (
            raise_if_transient,
            transport_errors_as_transient,
            wait_out,
        )
        from calendly_brevo.errors import TransientError

        key = self.settings.brevo.api_key
        what = f"Brevo GET /{path.lstrip('/')}"
        last: list[httpx.Response] = []

        def once() -> httpx.Response:
            last.clear()
            response = transport_errors_as_transient(
                lambda: self.http.get(
                    f"{self.settings.brevo.api_url.rstrip('/')}/{path.lstrip('/')}",
                    params=params,
                    headers={
                        "api-key": key.get_secret_value() if key else "",
                        "accept": "application/json",
                    },
                ),
                what,
            )
            last[:] = [response]
            return raise_if_transient(response, what)

        try:
            return wait_out(
                once,
                what=what,
                budget_seconds=self.settings.brevo.startup_wait_seconds,
                sleep=self.sleep,
            )
        except TransientError as exc:
            if last:
                return last[0]
            if isinstance(exc.__cause__, httpx.HTTPError):
                raise exc.__cause__ from None  # the checks report transport errors themselves
            raise


# --- Calendly -----------------------------------------------------------------------------------
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
        from calendly_brevo.crypto import existing_box

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


# --- Brevo --------------------------------------------------------------------------------------
def _brevo_error(resp: httpx.Response) -> tuple[str, str | None]:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    code = str(body.get("code", "")) if isinstance(body, dict) else ""
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    detail = f"Brevo {resp.status_code} {code}: {message}".strip()
    low = message.lower()
    if resp.status_code == 401 and ("not verified" in low or " ip" in f" {low}"):
        return detail, IP_FIX
    if resp.status_code == 401:
        return detail, (
            "the API key is wrong or was deleted: create one at "
            "https://app.brevo.com/settings/keys/api and set BREVO_API_KEY. " + IP_FIX
        )
    return detail, None


def check_brevo_key(ctx: DoctorContext) -> Check:
    name = "Brevo API key"
    try:
        ctx.settings.require_brevo()
    except ConfigError as exc:
        return Check(name, "FAIL", f"BREVO_API_KEY {exc.problem}", exc.allowed)
    if ctx.settings.dry_run:
        why = "brevo.dry_run is true" if ctx.settings.brevo.dry_run else "no BREVO_API_KEY"
        return Check(
            name, "WARN", f"DRY RUN ({why}): the worker sends nothing", "set BREVO_API_KEY"
        )
    try:
        resp = ctx.brevo_get("account")
    except httpx.HTTPError as exc:
        return Check(
            name, "FAIL", f"cannot reach Brevo: {type(exc).__name__}", "check BREVO_API_URL"
        )
    if resp.status_code == 200:
        ctx._cache["brevo_ok"] = True
        return Check(name, "OK", f"valid ({resp.json().get('email', 'account reachable')})")
    detail, fix = _brevo_error(resp)
    return Check(name, "FAIL", detail, fix)


def _brevo_lists(ctx: DoctorContext) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        resp = ctx.brevo_get("contacts/lists", {"limit": 50, "offset": offset})
        resp.raise_for_status()
        lists = resp.json().get("lists") or []
        yield from lists
        if len(lists) < 50:
            return
        offset += 50


def check_brevo_lists(ctx: DoctorContext) -> Check:
    from calendly_brevo.mapping import managed_lists

    name = "Brevo lists"
    wanted = managed_lists(ctx.settings)
    if not wanted:
        return Check(name, "OK", "no lists mapped")
    if ctx.settings.dry_run or not ctx._cache.get("brevo_ok"):
        return Check(name, "WARN", "not checked (Brevo key missing or invalid)")
    try:
        have = {int(item["id"]) for item in _brevo_lists(ctx)}
    except httpx.HTTPError as exc:
        return Check(name, "FAIL", f"cannot list Brevo lists: {exc}")
    missing = sorted(wanted - have)
    if missing:
        return Check(
            name,
            "FAIL",
            f"mapped list(s) missing in Brevo: {', '.join(map(str, missing))}",
            "create them in Brevo (Contacts → Lists) or fix event_mapping / list_moves",
        )
    return Check(name, "OK", f"all {len(wanted)} mapped lists exist")


def mapped_attributes(settings: Settings) -> set[str]:
    fm = settings.mapping
    names = {
        fm.name,
        fm.first_name,
        fm.last_name,
        fm.event_type_name,
        fm.scheduled_at,
        fm.status,
        fm.timezone,
        fm.cancel_url,
        fm.reschedule_url,
        *fm.questions_and_answers.values(),
        *fm.tracking.values(),
    }
    return {n for n in names if n}


def check_brevo_attributes(ctx: DoctorContext) -> Check:
    name = "Brevo attributes"
    wanted = mapped_attributes(ctx.settings)
    if ctx.settings.dry_run or not ctx._cache.get("brevo_ok"):
        return Check(name, "WARN", "not checked (Brevo key missing or invalid)")
    try:
        resp = ctx.brevo_get("contacts/attributes")
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        return Check(name, "FAIL", f"cannot list Brevo attributes: {exc}")
    have = {str(a.get("name", "")).upper() for a in resp.json().get("attributes") or []}
    missing = sorted(wanted - have)
    if missing:
        return Check(
            name,
            "FAIL",
            f"mapped attribute(s) missing in Brevo: {', '.join(missing)}",
            "run `calendly-brevo brevo setup` to create them",
        )
    return Check(name, "OK", f"all {len(wanted)} mapped attributes exist")


# --- infrastructure -----------------------------------------------------------------------------
def check_redis(ctx: DoctorContext) -> Check:
    name = "Redis"
    if not ctx.settings.storage.redis_url:
        return Check(name, "OK", "not configured: embedded SQLite queue")
    try:
        ok = ctx.redis_ping() if ctx.redis_ping else False
    except Exception as exc:
        ok = False
        ctx._cache["redis_error"] = type(exc).__name__
    if ok:
        return Check(name, "OK", "reachable")
    return Check(
        name,
        "FAIL",
        f"not reachable ({ctx._cache.get('redis_error', 'no answer')})",
        "check REDIS_URL and that Redis runs (with AOF on)",
    )


def check_dead_workers(ctx: DoctorContext) -> Check:
    """Messages held by workers whose heartbeat is stale: fine for one maintenance interval,
    a FAIL (no maintenance anywhere) past it."""
    name = "messages held by dead workers"
    if not ctx.settings.storage.redis_url:
        return Check(name, "OK", "embedded: `run` releases what it held when it starts")
    if ctx.redis_client is None or ctx._cache.get("redis_error"):
        return Check(name, "WARN", "not checked (Redis not reachable)")
    from calendly_brevo.queue_health import describe_stale, stale_holders

    timeout_ms = int(ctx.settings.worker.heartbeat_timeout_seconds * 1000)
    try:
        holders = stale_holders(ctx.redis_client(), heartbeat_timeout_ms=timeout_ms)
    except Exception as exc:  # a check reports, never raises
        return Check(name, "WARN", f"not checked ({type(exc).__name__})")
    detail, fix = describe_stale(holders, ctx.settings)
    if fix:
        return Check(name, "FAIL", detail, fix)
    return Check(name, "WARN" if holders.messages else "OK", detail)


def check_database(ctx: DoctorContext) -> Check:
    from calendly_brevo.db.migrate import is_current

    name = "database"
    try:
        engine = ctx.engine_factory()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = is_current(engine)
    except ServiceUnavailable as exc:  # the embedded store does not exist yet
        return Check(name, "FAIL", str(exc), exc.fix)
    except SQLAlchemyError as exc:
        return Check(name, "FAIL", f"not reachable: {type(exc).__name__}", "check DATABASE_URL")
    if not current:
        return Check(
            name, "FAIL", "schema is not at the newest migration", "run `calendly-brevo migrate`"
        )
    return Check(name, "OK", f"reachable and migrated ({engine.url.get_backend_name()})")


def check_stale_contacts(ctx: DoctorContext) -> Check:
    """Contacts pushed under an earlier mapping than today's (issue: a config change)."""
    from calendly_brevo.ledger import open_ledger
    from calendly_brevo.status import stale_contacts

    name = "stale contacts"
    try:
        n = stale_contacts(ctx.settings, open_ledger(ctx.engine_factory()))
    except (SQLAlchemyError, ConnectorError) as exc:
        return Check(name, "WARN", f"not checked: {type(exc).__name__}")
    if n:
        return Check(
            name,
            "WARN",
            f"{n} contact(s) were last pushed under an earlier mapping than the current config",
            "run `calendly-brevo resync` (it pushes only the differences, never custom events)",
        )
    return Check(name, "OK", "every pushed contact matches the current mapping")


CHECKS: tuple[Callable[[DoctorContext], Check], ...] = (
    check_calendly_token,
    check_calendly_scopes,
    check_subscription,
    check_signing_key,
    check_brevo_key,
    check_brevo_lists,
    check_brevo_attributes,
    check_redis,
    check_dead_workers,
    check_database,
    check_stale_contacts,
)


def run_checks(ctx: DoctorContext) -> list[Check]:
    results = []
    for check in CHECKS:
        if check is check_subscription and ctx._cache.get("me") is None:
            results.append(
                Check("webhook subscription", "WARN", "not checked (no Calendly access)")
            )
            continue
        results.append(check(ctx))
    return results
