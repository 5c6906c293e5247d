"""The Calendly scopes the connector's token needs, and a read-only probe for them.

Calendly has no endpoint that lists a personal access token's scopes (``/oauth/introspect`` is
for OAuth clients), so ``doctor`` infers them: one read call per read scope, and a 403 on it
means that scope is missing (Calendly names it in ``required_scopes`` when it knows). Write
scopes cannot be probed without changing something in the account; since a ``:write`` scope
implies ``:read``, only a missing read is certain, and the write scopes are listed as not probed.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any

from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.errors import CalendlyForbidden

#: Scope → what the connector uses it for (README "Calendly scopes" mirrors this).
NEEDED = {
    "users:read": "who the token belongs to, its organization (every command)",
    "scheduled_events:read": "backfill, reconcile, invitee lookups",
    "event_types:read": "event-type names and links create",
    "webhooks:read": "webhooks list / check, doctor",
    "webhooks:write": "webhooks install / check --repair",
    "scheduling_links:write": "links create",
    "routing_forms:read": "routing_form_submission.created (when routing forms are enabled)",
}
NOT_PROBED = ("webhooks:write", "scheduling_links:write")

Probe = Callable[[CalendlyClient, str, str], Any]
PROBES: tuple[tuple[str, Probe], ...] = (
    ("users:read", lambda c, org, user: c.me()),
    (
        "scheduled_events:read",
        lambda c, org, user: list(islice(c.list_scheduled_events(user=user), 1)),
    ),
    ("event_types:read", lambda c, org, user: list(islice(c.list_event_types(user=user), 1))),
    (
        "webhooks:read",
        lambda c, org, user: c.list_webhook_subscriptions(
            organization=org, scope="user", user=user
        ),
    ),
)


def missing_scopes(client: CalendlyClient, organization: str, user: str) -> list[str]:
    """The read scopes a 403 showed missing, in :data:`PROBES` order."""
    missing = []
    for scope, probe in PROBES:
        try:
            probe(client, organization, user)
        except CalendlyForbidden:
            missing.append(scope)
    return missing
