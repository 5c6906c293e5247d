"""An in-memory Brevo port for pipeline tests that do not need HTTP."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from calendly_brevo.brevo.client import EventScan
from calendly_brevo.brevo.models import UpsertResult
from calendly_brevo.errors import BrevoPermanentError, BrevoTransientError


@dataclass
class RecordingBrevo:
    upserts: list[tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    updates: list[tuple[str, dict[str, Any], tuple[int, ...]]] = field(default_factory=list)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: dict[str, set[int]] = field(default_factory=dict)
    fail_upserts: int = 0
    fail_events: int = 0
    #: Events that are recorded but whose answer is lost (a read timeout after sending).
    lost_answers: int = 0
    lookups: list[tuple[str, str]] = field(default_factory=list)
    permanent: bool = False
    #: Calls answered 429 (nothing applied) before the next one goes through.
    throttle_upserts: int = 0
    throttle_events: int = 0
    throttle_delay: float = 0.01
    #: A dry-run client: calls are only noted in ``dry_calls`` (as the real one logs them).
    dry_run: bool = False
    dry_calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _maybe_fail(self, which: str) -> None:
        throttled = getattr(self, f"throttle_{which}")
        if throttled:
            setattr(self, f"throttle_{which}", throttled - 1)
            raise BrevoTransientError("brevo 429", status=429, delay=self.throttle_delay)
        count = getattr(self, f"fail_{which}")
        if count:
            setattr(self, f"fail_{which}", count - 1)
            if self.permanent:
                raise BrevoPermanentError(
                    "invalid_parameter: bad", status=400, brevo_code="invalid_parameter"
                )
            raise BrevoTransientError("brevo 503", status=503, delay=0.01)

    def upsert_contact(
        self,
        email: str,
        attributes: dict[str, Any],
        list_ids: Any = (),
        unlink_list_ids: Any = (),
        *,
        existing: bool = False,
    ) -> UpsertResult:
        with self.lock:
            if self.dry_run:
                self.dry_calls.append(("upsert", email))
                return UpsertResult(created=False, contact_id=None)
            self._maybe_fail("upserts")
            self.upserts.append((email, dict(attributes), tuple(list_ids), tuple(unlink_list_ids)))
            created = email not in self.contacts
            self.contacts.setdefault(email, {}).update(attributes)
            members = self.lists.setdefault(email, set())
            members |= set(list_ids)
            members -= set(unlink_list_ids)
            return UpsertResult(created=created, contact_id=None)

    def update_contact(
        self,
        identifier: str | int,
        attributes: dict[str, Any] | None = None,
        list_ids: Any = (),
        unlink_list_ids: Any = (),
    ) -> None:
        email = str(identifier)
        with self.lock:
            self._maybe_fail("upserts")
            if email not in self.contacts:
                raise BrevoPermanentError("contact not found", status=404)
            self.updates.append((email, dict(attributes or {}), tuple(unlink_list_ids)))
            self.contacts[email].update(attributes or {})
            self.lists.setdefault(email, set()).difference_update(unlink_list_ids)
            self.lists[email] |= set(list_ids)

    def create_event(
        self,
        event_name: str,
        *,
        email: str,
        properties: dict[str, Any] | None = None,
        contact_properties: dict[str, Any] | None = None,
        event_date: str | None = None,
    ) -> None:
        with self.lock:
            if self.dry_run:
                self.dry_calls.append(("event", email))
                return
            self._maybe_fail("events")
            self.events.append((event_name, email, dict(properties or {})))
            if self.lost_answers:
                self.lost_answers -= 1
                raise BrevoTransientError("ReadTimeout", status=None, maybe_applied=True)

    def scan_events(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        until: str | None = None,
    ) -> EventScan:
        """Every event of the name, whatever its date (as a lookup with no date reads)."""
        with self.lock:
            self.lookups.append((event_name, until or "*"))
            values = {
                str(props[property_name])
                for name, _, props in self.events
                if name == event_name and property_name in props
            }
        return EventScan(event_name, None, None, frozenset(values), complete=True)
