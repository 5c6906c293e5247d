"""The fake Calendly's state: users, tokens, event types, bookings, webhooks, and a generator.

Resource URIs use ``https://api.calendly.com`` like the real API (``uri_base``), so a client that
follows a resource URI instead of building paths from the base URL is caught in tests.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

URI_BASE = "https://api.calendly.com"
ALL_SCOPES = None  # a legacy token: full access


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@dataclass
class Grant:
    owner: str
    scopes: frozenset[str] | None = ALL_SCOPES
    expires_at: float | None = None  # time.time(); None = never (PATs)


@dataclass
class FakeCalendly:
    """Everything the fake knows. Knobs: ``rate_limit`` (requests per ``rate_window`` per
    token), ``force_429`` (answer the next N API requests with 429), ``access_token_ttl``,
    ``webhooks_plan_gate`` (403 on creating subscriptions, like an old free plan)."""

    uri_base: str = URI_BASE
    rate_limit: int = 10_000
    rate_window: float = 60.0
    force_429: int = 0
    force_429_reset: int = 0
    access_token_ttl: int = 7200
    webhooks_plan_gate: bool = False
    oauth_clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret ("" public)
    grants: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    event_types: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    invitees: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # event uri -> list
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    signing_keys: dict[str, str | None] = field(default_factory=dict)  # subscription uri -> key
    scheduling_links: list[dict[str, Any]] = field(default_factory=list)
    no_shows: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _window: dict[str, tuple[float, int]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.org = f"{self.uri_base}/organizations/ORG{self.uid()}"
        self.user: dict[str, Any] = {
            "uri": f"{self.uri_base}/users/USER{self.uid()}",
            "name": "Host Person",
            "slug": "host-person",
            "email": "host@example.com",
            "scheduling_url": "https://calendly.com/host-person",
            "timezone": "Europe/Amsterdam",
            "avatar_url": None,
            "created_at": "2023-01-01T00:00:00.000000Z",
            "updated_at": "2023-01-01T00:00:00.000000Z",
            "current_organization": self.org,
            "resource_type": "User",
            "locale": "en",
        }
        if not self.event_types:
            self.add_event_type("Discovery Call", "discovery-call")
            self.add_event_type("Product Demo", "demo")

    def uid(self) -> str:
        return f"{next(self._ids):012d}"

    # -- tokens ---------------------------------------------------------------------------------
    def add_pat(self, token: str | None = None, scopes: set[str] | None = None) -> str:
        token = token or "pat_" + secrets.token_urlsafe(16)
        self.grants[token] = Grant(self.user["uri"], frozenset(scopes) if scopes else None)
        return token

    def add_oauth_client(self, client_id: str, secret: str = "") -> None:
        self.oauth_clients[client_id] = secret

    def issue(self, scopes: frozenset[str] | None = None) -> dict[str, Any]:
        access = "acc_" + secrets.token_urlsafe(16)
        refresh = "ref_" + secrets.token_urlsafe(16)
        self.grants[access] = Grant(self.user["uri"], scopes, time.time() + self.access_token_ttl)
        self.refresh_tokens[refresh] = Grant(self.user["uri"], scopes)
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl,
            "created_at": int(time.time()),
            "refresh_token": refresh,
            "access_token": access,
            "scope": "default",
            "owner": self.user["uri"],
            "organization": self.org,
        }

    def expire_access_tokens(self) -> None:
        for grant in self.grants.values():
            if grant.expires_at is not None:
                grant.expires_at = time.time() - 1

    # -- resources ------------------------------------------------------------------------------
    def add_event_type(self, name: str, slug: str) -> dict[str, Any]:
        et = {
            "uri": f"{self.uri_base}/event_types/ET{self.uid()}",
            "name": name,
            "slug": slug,
            "active": True,
            "kind": "solo",
            "duration": 30,
            "scheduling_url": f"https://calendly.com/host-person/{slug}",
            "profile": {"type": "User", "name": "Host Person", "owner": self.user["uri"]},
            "created_at": "2023-01-01T00:00:00.000000Z",
            "updated_at": "2023-01-01T00:00:00.000000Z",
        }
        self.event_types.append(et)
        return et

    def add_event(
        self, start: datetime, event_type: dict[str, Any], *, status: str = "active"
    ) -> dict[str, Any]:
        created = start - timedelta(days=3)
        event: dict[str, Any] = {
            "uri": f"{self.uri_base}/scheduled_events/EV{self.uid()}",
            "name": event_type["name"],
            "meeting_notes_plain": None,
            "meeting_notes_html": None,
            "status": status,
            "start_time": iso(start),
            "end_time": iso(start + timedelta(minutes=30)),
            "event_type": event_type["uri"],
            "location": {"type": "google_conference", "status": "pushed", "join_url": None},
            "invitees_counter": {"total": 0, "active": 0, "limit": 1},
            "created_at": iso(created),
            "updated_at": iso(created),
            "event_memberships": [
                {"user": self.user["uri"], "user_email": self.user["email"], "user_name": "Host"}
            ],
            "event_guests": [],
            "calendar_event": None,
        }
        if status == "canceled":
            event["cancellation"] = {
                "canceled_by": "Host Person",
                "reason": "",
                "canceler_type": "host",
                "created_at": iso(created + timedelta(days=1)),
            }
        self.events.append(event)
        self.invitees[event["uri"]] = []
        return event

    def add_invitee(
        self, event: dict[str, Any], email: str, name: str, *, canceled: bool = False
    ) -> dict[str, Any]:
        created = parse(event["created_at"])
        uid = self.uid()
        inv: dict[str, Any] = {
            "uri": f"{event['uri']}/invitees/INV{uid}",
            "email": email,
            "first_name": None,
            "last_name": None,
            "name": name,
            "status": "canceled" if canceled else "active",
            "questions_and_answers": [
                {"question": "Company", "answer": f"Company {uid[-3:]}", "position": 0}
            ],
            "timezone": "Europe/Amsterdam",
            "event": event["uri"],
            "created_at": iso(created),
            "updated_at": iso(created),
            "tracking": dict.fromkeys(
                (
                    "utm_campaign",
                    "utm_source",
                    "utm_medium",
                    "utm_content",
                    "utm_term",
                    "salesforce_uuid",
                )
            ),
            "text_reminder_number": None,
            "rescheduled": False,
            "old_invitee": None,
            "new_invitee": None,
            "cancel_url": f"https://calendly.com/cancellations/INV{uid}",
            "reschedule_url": f"https://calendly.com/reschedulings/INV{uid}",
            "routing_form_submission": None,
            "payment": None,
            "no_show": None,
            "reconfirmation": None,
            "scheduling_method": None,
            "invitee_scheduled_by": None,
        }
        if canceled:
            self._cancel(inv, by="Invitee", at=created + timedelta(days=1))
        self.invitees[event["uri"]].append(inv)
        counter = event["invitees_counter"]
        counter["total"] += 1
        counter["active"] += 0 if canceled else 1
        counter["limit"] = max(counter["limit"], counter["total"])
        return inv

    @staticmethod
    def _cancel(inv: dict[str, Any], *, by: str, at: datetime) -> None:
        inv["status"] = "canceled"
        inv["updated_at"] = iso(at)
        inv["cancellation"] = {
            "canceled_by": by,
            "reason": "",
            "canceler_type": "invitee",
            "created_at": iso(at),
        }

    def mark_no_show(self, inv: dict[str, Any]) -> dict[str, Any]:
        uri = f"{self.uri_base}/invitee_no_shows/NS{self.uid()}"
        event = self.event_by_uri(inv["event"])
        at = parse(event["end_time"]) + timedelta(minutes=5) if event else datetime.now(UTC)
        no_show = {"uri": uri, "invitee": inv["uri"], "created_at": iso(at)}
        self.no_shows[uri] = no_show
        inv["no_show"] = {"uri": uri, "created_at": no_show["created_at"]}
        return no_show

    def event_by_uri(self, uri: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["uri"] == uri), None)

    def all_invitees(self) -> list[dict[str, Any]]:
        return [inv for e in self.events for inv in self.invitees[e["uri"]]]

    def disable_subscription(self, uri: str) -> None:
        sub = self.subscriptions[uri]
        sub["state"] = "disabled"
        sub["retry_started_at"] = iso(datetime.now(UTC) - timedelta(hours=24))

    # -- the generator --------------------------------------------------------------------------
    def generate(
        self,
        events: int,
        *,
        start: datetime = datetime(2024, 1, 1, 9, tzinfo=UTC),
        step: timedelta = timedelta(hours=7),
        group_every: int = 5,
        group_size: int = 3,
        cancel_every: int = 7,
        reschedule_every: int = 10,
        no_show_every: int = 6,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """``events`` scheduled events: every ``group_every``-th a group event with
        ``group_size`` invitees, every ``cancel_every``-th canceled by the host, every
        ``reschedule_every``-th (one-on-one) rescheduled into the next event (an old canceled
        invitee with ``rescheduled: true`` and a new one with ``old_invitee``), every
        ``no_show_every``-th past one-on-one marked no-show. Returns counts."""
        now = now or datetime.now(UTC)
        counts = {"events": 0, "invitees": 0, "canceled": 0, "rescheduled": 0, "no_shows": 0}
        pending_old: dict[str, Any] | None = None
        for i in range(events):
            at = start + i * step
            et = self.event_types[i % len(self.event_types)]
            group = group_every > 0 and i % group_every == 0
            canceled = cancel_every > 0 and i % cancel_every == 3 and pending_old is None
            event = self.add_event(at, et, status="canceled" if canceled else "active")
            counts["events"] += 1
            size = group_size if group else 1
            for k in range(size):
                n = counts["invitees"]
                email = f"invitee{n}@example.com"
                if pending_old is not None and k == 0:
                    email = pending_old["email"]
                inv = self.add_invitee(event, email, f"Invitee {n}", canceled=canceled)
                counts["invitees"] += 1
                counts["canceled"] += canceled
                if pending_old is not None and k == 0:
                    self._cancel(pending_old, by="Invitee", at=parse(inv["created_at"]))
                    pending_old["rescheduled"] = True
                    pending_old["new_invitee"] = inv["uri"]
                    inv["old_invitee"] = pending_old["uri"]
                    old_event = self.event_by_uri(pending_old["event"])
                    if old_event is not None:
                        old_event["status"] = "canceled"
                        old_event["invitees_counter"]["active"] = 0
                    counts["rescheduled"] += 1
                    counts["canceled"] += 1
                    pending_old = None
            first = self.invitees[event["uri"]][0]
            if (
                not group
                and not canceled
                and reschedule_every > 0
                and i % reschedule_every == 2
                and i + 1 < events
            ):
                pending_old = first
            elif (
                not group
                and not canceled
                and no_show_every > 0
                and i % no_show_every == 1
                and parse(event["end_time"]) < now
            ):
                self.mark_no_show(first)
                counts["no_shows"] += 1
        return counts
