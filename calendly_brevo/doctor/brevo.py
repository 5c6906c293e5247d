"""The Brevo checks: the key (and the IP allow-list), the mapped lists and attributes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from calendly_brevo.config import FieldMapping
from calendly_brevo.doctor.base import IP_FIX, Check, DoctorContext
from calendly_brevo.errors import ConfigError


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
    name = "Brevo lists"
    wanted = ctx.settings.rules.managed_lists()
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


def mapped_attributes(fm: FieldMapping) -> set[str]:
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
    wanted = mapped_attributes(ctx.settings.mapping)
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
