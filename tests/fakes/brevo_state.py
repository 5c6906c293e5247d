"""``FakeBrevo``: all the state of one fake Brevo account, as plain Python objects.

Mutate it only from the server's event loop (the app does; ``FakeBrevoServer.call()`` runs your
function there). Reading attributes from a test thread while the server is idle is fine; for a
consistent copy while requests are in flight use ``FakeBrevoServer.snapshot()``.

Decisions where Brevo's behaviour is not documented (see reference/brevo-api.md):

- ``listIds`` naming a list that does not exist, on ``POST /contacts`` or ``PUT
  /contacts/{id}``: by default the whole request is rejected, 400 ``invalid_parameter``, and
  nothing changes (createContact declares no 404). ``unknown_list_policy="ignore"`` instead
  drops the unknown ids and records nothing.
- An injected ``timeout`` holds the request open for ``timeout_hold_seconds`` (or the rule's
  ``delay``) and then answers 504. By default the effect is **not** applied
  (``timeout_applies_effect=False``); with True the request is applied first and then held,
  which is what a real server that is slow to answer does to a client that gives up.
- Contacts must have an email (the connector always has one). ``ext_id`` is stored and unique.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from tests.fakes.brevo_faults import (
    FaultRecord,
    FaultRule,
    RateLimiter,
    make_rule,
)
from tests.fakes.brevo_records import (
    DEFAULT_ATTRIBUTES,
    FAMILIES,
    Attribute,
    Contact,
    EventRecord,
    Family,
    IgnoredAttribute,
    RequestRecord,
    Violation,
)

UnknownListPolicy = Literal["reject", "ignore"]


def iso_now(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).isoformat(timespec="milliseconds")


class FakeBrevo:
    """State of one fake Brevo account plus the fake's knobs (limits, faults, api key)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        lists: Mapping[int, str] | Iterable[int] = (),
        attributes: Iterable[Attribute] = (),
        limits: Mapping[Family, tuple[int, float]] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        timeout_hold_seconds: float = 30.0,
        timeout_applies_effect: bool = False,
        unknown_list_policy: UnknownListPolicy = "reject",
        validate_responses: bool = True,
    ) -> None:
        self.api_key = api_key
        self.clock = clock
        self.timeout_hold_seconds = timeout_hold_seconds
        self.timeout_applies_effect = timeout_applies_effect
        self.unknown_list_policy: UnknownListPolicy = unknown_list_policy
        self.validate_responses = validate_responses
        self._seed = seed
        self._initial_lists = (
            dict(lists) if isinstance(lists, Mapping) else {i: f"List {i}" for i in lists}
        )
        self._initial_attributes = tuple(attributes)
        self._initial_limits = dict(limits or {})
        self.reset()

    def reset(self) -> None:
        """Back to the constructor's lists, attributes and limits; everything else cleared."""
        self.contacts: dict[str, Contact] = {}
        self.lists: dict[int, str] = {}
        self.list_folders: dict[int, int] = {}
        self.attributes: dict[str, Attribute] = {}
        self.events: list[EventRecord] = []
        self.requests: list[RequestRecord] = []
        self.violations: list[Violation] = []
        self.response_violations: list[Violation] = []
        self.ignored_attributes: list[IgnoredAttribute] = []
        self.rate_limited: dict[Family, int] = dict.fromkeys(FAMILIES, 0)
        self.fault_rules: list[FaultRule] = []
        self.faults: list[FaultRecord] = []
        self.rng = random.Random(self._seed)
        self.limiter = RateLimiter(dict(self._initial_limits), self.clock)
        self.created_at = iso_now(self.clock)
        self._contact_ids = itertools.count(1)
        self._rule_ids = itertools.count(1)
        self._seq = itertools.count(1)
        #: Bulk endpoints (tests/fakes/brevo_bulk.py): /events/batch items to refuse (by their
        #: ``connector_event_id``), import processes, and how long an import stays in_process.
        self.rejected_batch_items: set[str] = set()
        self.processes: dict[int, dict[str, Any]] = {}
        self.import_polls_in_process = 1
        #: An import's rows are applied this long after it was accepted (Brevo imports are
        #: asynchronous), at the next import or ``GET /contacts``; rows whose email is in
        #: ``import_skips`` are never applied (as Brevo skips a row it cannot take).
        self.import_delay_seconds = 0.0
        self.import_skips: set[str] = set()
        self.pending_imports: list[tuple[float, list[dict[str, Any]], list[int], bool]] = []
        self._process_ids = itertools.count(1)
        for list_id, name in self._initial_lists.items():
            self.add_list(name, list_id=list_id)
        for attribute in (*DEFAULT_ATTRIBUTES, *self._initial_attributes):
            self.attributes[attribute.name] = attribute

    # -- setup helpers --------------------------------------------------------------------

    def add_list(
        self, name: str | None = None, *, list_id: int | None = None, folder_id: int = 1
    ) -> int:
        """Create a list (id: given, or one more than the highest); returns its id."""
        if list_id is None:
            list_id = max(self.lists, default=0) + 1
        self.lists[list_id] = name or f"List {list_id}"
        self.list_folders[list_id] = folder_id
        return list_id

    def next_process_id(self) -> int:
        return next(self._process_ids)

    def reject_batch_items(self, *connector_event_ids: str) -> None:
        """These events are refused however they come: ``POST /events/batch`` names them in a
        207 (the rest go in), a single ``POST /events`` answers 400. Until :meth:`clear_faults`."""
        self.rejected_batch_items.update(connector_event_ids)

    def add_attribute(self, name: str, type: str = "text", category: str = "normal") -> None:
        self.attributes[name] = Attribute(name, type, category)

    def set_limit(self, family: Family, limit: int, window_seconds: float) -> None:
        """Change a family's rate limit now (the current window's count carries over)."""
        self.limiter.set_limit(family, limit, window_seconds)

    @property
    def limits(self) -> dict[Family, tuple[int, float]]:
        return dict(self.limiter.limits)

    def inject(
        self,
        kind: str,
        *,
        family: str | None = None,
        path: str | None = None,
        probability: float | None = None,
        count: int | None = None,
        method: str | None = None,
        status: int | None = None,
        delay: float | None = None,
        apply_effect: bool | None = None,
        sticky: str | None = None,
    ) -> FaultRule:
        """Add a fault rule: kind in 5xx, 429, timeout, slow, 400; ``path`` is a regex searched
        in the request path (e.g. ``r"/contacts$"``); ``count`` None means every match."""
        rule = make_rule(
            next(self._rule_ids),
            kind,
            family=family,
            path=path,
            method=method,
            probability=probability,
            count=count,
            status=status,
            delay=delay,
            apply_effect=apply_effect,
            sticky=sticky,
        )
        self.fault_rules.append(rule)
        return rule

    def clear_faults(self) -> None:
        self.fault_rules.clear()
        self.rejected_batch_items.clear()

    # -- queries --------------------------------------------------------------------------

    def contact(self, email: str) -> Contact | None:
        return self.contacts.get(email.lower())

    def contact_by_id(self, contact_id: int) -> Contact | None:
        return next((c for c in self.contacts.values() if c.id == contact_id), None)

    def list_members(self, list_id: int) -> list[str]:
        return sorted(c.email for c in self.contacts.values() if list_id in c.list_ids)

    def request_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {f: {} for f in FAMILIES}
        for record in self.requests:
            by_status = counts[record.family]
            by_status[str(record.status)] = by_status.get(str(record.status), 0) + 1
        return counts

    def next_seq(self) -> int:
        return next(self._seq)

    def next_contact_id(self) -> int:
        return next(self._contact_ids)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able deep copy of the state (what ``GET /__fake__/state`` answers)."""
        return {
            "contacts": [c.to_json() for c in self.contacts.values()],
            "lists": [
                {
                    "id": i,
                    "name": n,
                    "folderId": self.list_folders.get(i, 1),
                    "members": self.list_members(i),
                }
                for i, n in sorted(self.lists.items())
            ],
            "attributes": [a.to_json() for a in self.attributes.values()],
            "events": [e.to_json() for e in self.events],
            "counts": {
                "contacts": len(self.contacts),
                "events": len(self.events),
                "requests": self.request_counts(),
            },
            "violations": [v.to_json() for v in self.violations],
            "response_violations": [v.to_json() for v in self.response_violations],
            "ignored_attributes": [i.to_json() for i in self.ignored_attributes],
            "rate_limited": dict(self.rate_limited),
            "limits": {f: list(v) for f, v in self.limits.items()},
            "fault_rules": [r.to_json() for r in self.fault_rules],
            "faults": [f.to_json() for f in self.faults],
            "requests": [r.to_json() for r in self.requests],
        }
