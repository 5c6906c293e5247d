"""``calendly-brevo doctor``: the seed's troubleshooting table as checks.

Each check is a small function ``(DoctorContext) -> Check`` so tests call them one by one; the
command runs :data:`CHECKS` in order and prints ``OK`` / ``WARN`` / ``FAIL`` with the fix. A check
never raises for the condition it checks: it reports it.

The checks live by area (:mod:`~calendly_brevo.doctor.calendly`,
:mod:`~calendly_brevo.doctor.brevo`, :mod:`~calendly_brevo.doctor.infra`);
:mod:`~calendly_brevo.doctor.base` holds :class:`Check` and :class:`DoctorContext`.
"""

from __future__ import annotations

from collections.abc import Callable

from calendly_brevo.doctor.base import Check, DoctorContext
from calendly_brevo.doctor.brevo import (
    check_brevo_attributes,
    check_brevo_key,
    check_brevo_lists,
)
from calendly_brevo.doctor.calendly import (
    check_calendly_scopes,
    check_calendly_token,
    check_signing_key,
    check_subscription,
)
from calendly_brevo.doctor.infra import (
    check_database,
    check_dead_workers,
    check_redis,
    check_stale_contacts,
)

__all__ = [
    "CHECKS",
    "Check",
    "DoctorContext",
    "check_brevo_attributes",
    "check_brevo_key",
    "check_brevo_lists",
    "check_calendly_scopes",
    "check_calendly_token",
    "check_database",
    "check_dead_workers",
    "check_redis",
    "check_signing_key",
    "check_stale_contacts",
    "check_subscription",
    "run_checks",
]


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
