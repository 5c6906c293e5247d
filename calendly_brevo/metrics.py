"""Prometheus metrics: every metric the connector exports, in one place.

Names carry the ``calendly_brevo_`` prefix and ``_total`` / ``_seconds`` suffixes. Labels are
low-cardinality only: event names are folded into a fixed set (:func:`event_label`), never an
email, invitee URI or event id.

Worker processes run in prometheus-client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR``
is set (the ``worker`` command sets it), so N processes report as one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric

from calendly_brevo import __version__

PREFIX = "calendly_brevo"

#: This process's id, asked once and again in a forked child.
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))

if getattr(values.ValueClass, "_multiprocess", False):
    # In multiprocess mode every update asks os.getpid() (a system call) to notice a fork:
    # about half of an inc's cost, and a worker makes a few dozen updates per event. The
    # process id comes from the cache above instead, through prometheus-client's own hook for
    # it (the one its documentation gives for uWSGI's worker ids). Metrics are created below,
    # at import, and Dramatiq's at process boot: all of them after this.
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _PID[0])  # type: ignore[no-untyped-call]

KNOWN_EVENTS = frozenset(
    {
        "invitee.created",
        "invitee.canceled",
        "invitee_no_show.created",
        "invitee_no_show.deleted",
        "routing_form_submission.created",
        "event_type.created",
        "event_type.updated",
        "event_type.deleted",
    }
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


def event_label(name: object) -> str:
    """Fold an event name into a bounded label value."""
    return name if isinstance(name, str) and name in KNOWN_EVENTS else "other"


# --- receiver ---------------------------------------------------------------------------------
WEBHOOKS_RECEIVED = Counter(
    f"{PREFIX}_webhooks_received_total",
    "Webhook requests received, by event and outcome "
    "(accepted, unsigned, bad_signature, malformed_signature, stale, too_large, read_timeout, "
    "malformed, queue_down).",
    ["event", "outcome"],
)
WEBHOOK_RECEIVE_SECONDS = Histogram(
    f"{PREFIX}_webhook_receive_seconds",
    "Time from request start to response for POST /webhooks/calendly.",
    buckets=LATENCY_BUCKETS,
)

# --- worker -----------------------------------------------------------------------------------
EVENTS_PROCESSED = Counter(
    f"{PREFIX}_events_processed_total",
    "Events processed by the worker, by event and outcome "
    "(applied; dry_run: stored, calls logged not sent; suppressed: stored, not pushed; "
    "duplicate, ignored, retried, rate_limited: a wait, dead_lettered).",
    ["event", "outcome"],
)
EVENTS_SUPPRESSED = Counter(
    f"{PREFIX}_events_suppressed_total",
    "Events stored but not pushed to Brevo, by event and reason (sync_switch, "
    "connector_disabled, event_type_filter, forgotten).",
    ["event", "reason"],
)
EVENT_PROCESSING_SECONDS = Histogram(
    f"{PREFIX}_event_processing_seconds",
    "Worker time spent on one event attempt.",
    ["event"],
    buckets=LATENCY_BUCKETS,
)
EVENT_LAG_SECONDS = Histogram(
    f"{PREFIX}_event_lag_seconds",
    "End-to-end lag from receipt by the receiver to applied in Brevo.",
    ["event"],
    buckets=LAG_BUCKETS,
)
LAST_APPLIED_TIMESTAMP = Gauge(
    f"{PREFIX}_last_event_applied_timestamp_seconds",
    "Unix time of the last event applied.",
    multiprocess_mode="max",
)
DEAD_LETTERED = Counter(
    f"{PREFIX}_dead_lettered_total",
    "Events written to the dead-letter table, by event and reason code.",
    ["event", "reason"],
)
DEAD_LETTERS = Gauge(
    f"{PREFIX}_dead_letters",
    "Rows currently in the dead-letter table that have not been replayed.",
    multiprocess_mode="max",
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_queue_depth",
    "Messages waiting in the queue (ready, delayed).",
    ["queue", "kind"],
    multiprocess_mode="max",
)
STALE_CONTACTS = Gauge(
    f"{PREFIX}_stale_contacts",
    "Contacts last pushed to Brevo under another mapping than the current config's "
    "(`calendly-brevo resync` updates them).",
    multiprocess_mode="max",
)
STALE_WORKER_MESSAGES = Gauge(
    f"{PREFIX}_stale_worker_messages",
    "Messages held by Redis workers whose heartbeat is older than "
    "worker.heartbeat_timeout_seconds (a killed worker's); queue maintenance requeues them "
    "within worker.maintenance_interval_seconds.",
    multiprocess_mode="max",
)

# --- Brevo ------------------------------------------------------------------------------------
EVENT_RESEND_CHECKS = Counter(
    f"{PREFIX}_event_resend_checks_total",
    "Custom events whose earlier attempt had an unknown outcome, looked up in Brevo before "
    "sending again, by result (found: not sent again; absent: sent; found_shared, "
    "absent_shared: answered by a lookup for another event of its batch, no request; "
    "unavailable: the lookup "
    "failed for good, so it was sent; budget_spent_resent: brevo.lookup_share spent, sent "
    "again as brevo.resend_in_doubt_events allows; budget_spent_in_doubt: share spent, "
    "dead-lettered as in_doubt).",
    ["result"],
)
BREVO_REQUESTS = Counter(
    f"{PREFIX}_brevo_requests_total",
    "HTTP requests made to Brevo, by limit family and status code (or 'error').",
    ["family", "status"],
)
BREVO_REQUEST_SECONDS = Histogram(
    f"{PREFIX}_brevo_request_seconds",
    "Duration of HTTP requests to Brevo.",
    ["family"],
    buckets=LATENCY_BUCKETS,
)
BREVO_RATE_LIMITED = Counter(
    f"{PREFIX}_brevo_429_total",
    "429 Too Many Requests answers from Brevo, by family.",
    ["family"],
)
BREVO_RATELIMIT_REMAINING = Gauge(
    f"{PREFIX}_brevo_ratelimit_remaining",
    "Last x-sib-ratelimit-remaining Brevo sent, by family.",
    ["family"],
    multiprocess_mode="min",
)
BREVO_RATELIMIT_LIMIT = Gauge(
    f"{PREFIX}_brevo_ratelimit_limit",
    "Last x-sib-ratelimit-limit Brevo sent, by family.",
    ["family"],
    multiprocess_mode="max",
)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 150, 200)
BREVO_BATCH_ITEMS = Histogram(
    f"{PREFIX}_brevo_batch_items",
    "Items per coalesced Brevo request, by bulk endpoint (events, contacts, import).",
    ["endpoint"],
    buckets=BATCH_SIZE_BUCKETS,
)
BREVO_BATCHES = Counter(
    f"{PREFIX}_brevo_batches_total",
    "Coalesced Brevo requests by endpoint and outcome (accepted: every item taken; partial: "
    "a 207, some refused; split: refused as a whole, items sent one by one; failed: the "
    "request failed, every item retries; in_doubt: no answer, every item is looked up). "
    "Imports also count contacts confirmed (read back) and unconfirmed (created alone).",
    ["endpoint", "outcome"],
)
BREVO_BATCH_ITEMS_IN_DOUBT = Counter(
    f"{PREFIX}_brevo_batch_items_in_doubt_total",
    "Items of coalesced requests whose outcome is unknown (looked up before any resend).",
    ["endpoint"],
)
WORKER_GROUP_EVENTS = Histogram(
    f"{PREFIX}_worker_group_events",
    "Events per group pass: the events of a batch off the queue that the pass took up, "
    "claimed, pushed and recorded as one (worker/group.py, worker/consumer.py).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
WORKER_GROUP_ALONE = Counter(
    f"{PREFIX}_worker_group_alone_total",
    "Events a group pass left to the one-event path, by why (other_event: not an invitee "
    "event with an email, or its contact is not synced; same_contact: a second event of one "
    "contact or invitee in the group; group_full: past worker.group_max; locked: another "
    "thread or process holds the contact; forgotten: a tombstoned person; stored: a "
    "redelivery of a stored event).",
    ["reason"],
)
RATELIMIT_WAIT_SECONDS = Histogram(
    f"{PREFIX}_ratelimit_wait_seconds",
    "Time spent waiting for a token from the shared bucket, by family.",
    ["family"],
    buckets=LATENCY_BUCKETS,
)

# --- Calendly ---------------------------------------------------------------------------------
CALENDLY_REQUESTS = Counter(
    f"{PREFIX}_calendly_requests_total",
    "HTTP requests made to the Calendly API, by status code (or 'error').",
    ["status"],
)
OAUTH_CONNECTS = Counter(
    f"{PREFIX}_oauth_connects_total",
    "Calendly OAuth connection attempts, by result (connected, replaced, refused_account, "
    "refused_auth, bad_state, failed).",
    ["result"],
)
BACKFILL_ENVELOPES = Counter(
    f"{PREFIX}_backfill_envelopes_total",
    "Webhook envelopes synthesized by backfill or reconcile (one invitee gives one to three: "
    "created, canceled, no-show), by command and outcome (enqueued, skipped).",
    ["command", "outcome"],
)
#: Labelled by scope so that it is *absent* until someone knows the state: an unlabelled gauge
#: would export 0 from every process (and fire the "disabled" alert) before any check ran.
WEBHOOK_SUBSCRIPTION_ACTIVE = Gauge(
    f"{PREFIX}_webhook_subscription_active",
    "1 when the connector's Calendly webhook subscription is active, 0 when disabled or missing "
    "(set by webhooks check, and every few minutes by the worker supervisor and run).",
    ["scope"],
    multiprocess_mode="min",
)


# --- this process -----------------------------------------------------------------------------
class ProcessFacts:
    """``calendly_brevo_build_info{version}`` and ``calendly_brevo_dry_run``.

    A collector rather than two gauges: both are facts of the process that serves ``/metrics``
    (its package version, its settings), so they need no multiprocess files and are exported by
    the receiver, the worker supervisor and ``run`` alike. ``dry_run`` is absent until
    :func:`set_dry_run` is called with the settings (an unknown state is not exported as 0).
    """

    def __init__(self) -> None:
        self.dry_run: bool | None = None

    def describe(self) -> Iterator[Metric]:
        """Both families, whether or not ``dry_run`` is known yet (dashboards may use both)."""
        yield GaugeMetricFamily(f"{PREFIX}_build_info", "", labels=["version"])
        yield GaugeMetricFamily(f"{PREFIX}_dry_run", "")

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            f"{PREFIX}_build_info",
            "Always 1; the version label is the running package version.",
            labels=["version"],
        )
        info.add_metric([__version__], 1)
        yield info
        if self.dry_run is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_dry_run",
                "1 when the connector runs dry (logs the Brevo calls it would make, sends none).",
                value=int(self.dry_run),
            )


PROCESS_FACTS = ProcessFacts()
REGISTRY.register(PROCESS_FACTS)


def set_dry_run(dry_run: bool) -> None:
    """Export the ``calendly_brevo_dry_run`` gauge for this process's settings."""
    PROCESS_FACTS.dry_run = dry_run
