"""The ``brevo`` section: the key and dry run, the plan's rate limits, the custom event names,
list moves, and the in-doubt lookups' budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from calendly_brevo.config.base import DEFAULT_BREVO_API_URL, Strict
from calendly_brevo.config.batch import BatchSettings

#: Share of each of Brevo's windows the token bucket keeps free for jitter: how much later than
#: its neighbours a request may reach Brevo and still be counted in its own window (40 ms at 10
#: requests/s). See :mod:`calendly_brevo.ratelimit.bucket`.
DEFAULT_RATE_MARGIN = 0.04


class Bucket(Strict):
    rate: float = Field(gt=0, description="tokens per second")
    burst: int = Field(ge=1, description="bucket capacity")


PLAN_PRESETS: dict[str, dict[str, Bucket]] = {
    # Brevo: 10 rps on /contacts and POST /events, 100/hour on everything else.
    "general": {
        "contacts": Bucket(rate=10, burst=10),
        "events": Bucket(rate=10, burst=10),
        "other": Bucket(rate=100 / 3600, burst=5),
    },
    # Professional and Enterprise: 20 rps.
    "advanced": {
        "contacts": Bucket(rate=20, burst=20),
        "events": Bucket(rate=20, burst=20),
        "other": Bucket(rate=100 / 3600, burst=5),
    },
}


class BrevoEventNames(Strict):
    created: str = "calendly_invitee_created"
    rescheduled: str = "calendly_invitee_rescheduled"
    canceled: str = "calendly_invitee_canceled"
    no_show: str = "calendly_invitee_no_show"
    no_show_deleted: str | None = None
    routing_form_submitted: str | None = None


class ListMove(Strict):
    add: tuple[int, ...] = ()
    remove: tuple[int, ...] = ()


class ListMoves(Strict):
    on_cancel: ListMove = ListMove()
    on_no_show: ListMove = ListMove()


class BrevoSettings(Strict):
    api_key: SecretStr | None = None
    #: ``true``: log the Brevo calls instead of sending them, even with a key. Unset: dry only
    #: when there is no key, which outside embedded mode is refused (``Settings.require_brevo``).
    dry_run: bool | None = None
    api_url: str = DEFAULT_BREVO_API_URL
    plan: Literal["general", "advanced"] = "general"
    rate_limits: dict[Literal["contacts", "events", "other"], Bucket] = {}
    #: The jitter allowance, as a share of Brevo's window (``burst / rate`` seconds): at 0.04 and
    #: 10 requests/s a request may reach Brevo 40 ms later than its neighbours and still fall in
    #: its own window. Raise it where the way to Brevo is jittery (a busy host, a proxy, a long
    #: network path: 429s in the logs although ``rate_limits`` match the plan); the sustained
    #: rate is ``rate / (1 + rate_margin)``, so 0.1 costs 9 % of the throughput.
    rate_margin: float = Field(default=DEFAULT_RATE_MARGIN, ge=0, le=0.5)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    events: BrevoEventNames = BrevoEventNames()
    list_moves: ListMoves = ListMoves()
    #: Where a phone number goes when the SMS identifier conflicts with another contact.
    sms_fallback_attribute: str = "PHONE_TEXT"
    #: Upsert the submitter of a routing form (``routing_form_submission.created``).
    upsert_routing_form_submitters: bool = False
    #: Before sending a custom event again after an attempt with an unknown outcome (no answer
    #: after the request was sent, a 504, a worker that died mid-event), look it up with
    #: ``GET /events``; found means it is not sent twice. Off: such an event may fire twice.
    check_before_resend: bool = True
    #: ``brevo setup``, ``doctor`` and the worker's set-up check at start retry transient
    #: answers (5xx, 429, timeouts) with backoff for this long before giving up. Keep it
    #: under the worker pod's startupProbe budget (60 s in deploy/k8s).
    startup_wait_seconds: float = Field(default=30.0, ge=0, le=3600)
    #: Share of the "other" family (100 requests/hour) the in-doubt lookups (``GET /events``)
    #: may use; the rest stays free for set-up, doctor and list calls.
    lookup_share: float = Field(default=0.5, gt=0, le=1)
    #: When the lookup share is spent, custom events (Brevo names) that are sent again without
    #: a lookup because their automations tolerate a duplicate; any other in-doubt event is
    #: dead-lettered with reason ``in_doubt`` for an operator to check and replay.
    resend_in_doubt_events: list[str] = []
    #: Coalescing into Brevo's bulk endpoints (:mod:`calendly_brevo.config.batch`).
    batch: BatchSettings = BatchSettings()

    @model_validator(mode="after")
    def _resend_names_are_events(self) -> BrevoSettings:
        known = {v for v in self.events.model_dump().values() if v}
        unknown = sorted(set(self.resend_in_doubt_events) - known)
        if unknown:
            raise ValueError(
                f"resend_in_doubt_events: {', '.join(unknown)} is not one of the custom events "
                f"this connector sends ({', '.join(sorted(known))})"
            )
        return self

    def lookup_bucket(self) -> Bucket:
        """The in-doubt lookups' share of the "other" family's bucket."""
        other = self.bucket("other")
        return Bucket(
            rate=other.rate * self.lookup_share,
            burst=max(1, int(other.burst * self.lookup_share)),
        )

    @property
    def runs_dry(self) -> bool:
        if self.dry_run is not None:
            return self.dry_run
        return self.api_key is None or not self.api_key.get_secret_value()

    def bucket(self, family: str) -> Bucket:
        return self.rate_limits.get(family) or PLAN_PRESETS[self.plan][family]  # type: ignore[call-overload]
