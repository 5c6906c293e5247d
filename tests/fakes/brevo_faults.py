"""Rate-limit windows and injected faults for the fake Brevo.

Rate limits are fixed windows aligned to the window length on the state's wall clock (a 1 s
window starts at every whole second, a 3600 s window at every whole hour), one counter per
family. Every authenticated request to ``/v3`` counts, including those answered 400 or by a
fault; a request over the limit is answered 429 and changes nothing.

``x-sib-ratelimit-reset`` is the number of whole seconds until the current window ends, rounded
up and never below 1 (Brevo documents "typically seconds"; 0 would invite a busy loop).

Faults are rules checked in order on each request that passed auth, the rate limit and spec
validation; the first rule that matches and fires decides. ``probability`` is rolled on the
state's seeded ``random.Random``, so a run is reproducible for a given seed and request order.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from tests.fakes.brevo_records import FAMILIES, Family

FaultKind = Literal["5xx", "429", "timeout", "slow", "400"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
DEFAULT_LIMITS: dict[Family, tuple[int, float]] = {
    "contacts": (10, 1.0),
    "events": (10, 1.0),
    "other": (100, 3600.0),
}
DEFAULT_SLOW_SECONDS = 0.5


@dataclass(frozen=True)
class Window:
    limit: int
    remaining: int
    reset: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "x-sib-ratelimit-limit": str(self.limit),
            "x-sib-ratelimit-remaining": str(self.remaining),
            "x-sib-ratelimit-reset": str(self.reset),
        }


class RateLimiter:
    """Fixed windows per family. Limits may change at any time; the count carries over."""

    def __init__(self, limits: dict[Family, tuple[int, float]], clock: Callable[[], float]) -> None:
        self.limits: dict[Family, tuple[int, float]] = {**DEFAULT_LIMITS, **limits}
        self._clock = clock
        self._windows: dict[Family, tuple[int, int]] = {}  # family -> (window index, count)

    def set_limit(self, family: Family, limit: int, window_seconds: float) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; use one of {FAMILIES}")
        if limit < 0 or window_seconds <= 0:
            raise ValueError("limit must be >= 0 and window_seconds > 0")
        if self.limits.get(family, (0, 0.0))[1] != window_seconds:
            self._windows.pop(family, None)
        self.limits[family] = (limit, float(window_seconds))

    def hit(self, family: Family) -> Window:
        """Count one request and say whether it is allowed."""
        return self._window(family, consume=True)

    def peek(self, family: Family) -> Window:
        """The current window without counting (for 401s, which Brevo cannot bill)."""
        return self._window(family, consume=False)

    def _window(self, family: Family, *, consume: bool) -> Window:
        limit, length = self.limits[family]
        now = self._clock()
        index = math.floor(now / length)
        current, count = self._windows.get(family, (index, 0))
        if current != index:
            count = 0
        if consume:
            count += 1
            self._windows[family] = (index, count)
        reset = max(1, math.ceil((index + 1) * length - now))
        return Window(limit, max(0, limit - count), reset, count <= limit)


@dataclass
class FaultRule:
    """One ``inject()`` call. ``count`` is how many more times it may fire (None: forever)."""

    id: int
    kind: FaultKind
    family: Family | None = None
    path: str | None = None
    method: str | None = None
    probability: float | None = None
    count: int | None = None
    status: int | None = None
    delay: float | None = None
    apply_effect: bool | None = None
    #: A dotted path into the JSON body (``event_properties.connector_event_id``): once the rule
    #: fired on a request, every later request with the same value there gets the same fault,
    #: as a permanent error would (a ``repeat``), until the faults are cleared.
    sticky: str | None = None
    fired: int = 0
    stuck: set[str] = field(default_factory=set)

    def matches(self, method: str, path: str, family: Family) -> bool:
        """Whether the rule applies to this request (its ``count`` aside)."""
        if self.family is not None and self.family != family:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None

    def sticky_value(self, body: Any) -> str | None:
        if self.sticky is None:
            return None
        node = body
        for part in self.sticky.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return None if node is None else str(node)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "stuck"} | {"stuck": len(self.stuck)}


@dataclass(frozen=True)
class FaultRecord:
    """A fault that fired: which rule, on which request, with what outcome."""

    rule_id: int
    kind: FaultKind
    request_seq: int
    method: str
    path: str
    family: Family
    status: int | None  # None for "slow": the normal handler answered
    delay: float
    effect_applied: bool
    #: A sticky rule's fault answered again for the same key (not a newly injected one).
    repeat: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_rule(
    rule_id: int,
    kind: str,
    *,
    family: str | None = None,
    path: str | None = None,
    method: str | None = None,
    probability: float | None = None,
    count: int | None = None,
    status: int | None = None,
    delay: float | None = None,
    apply_effect: bool | None = None,
    sticky: str | None = None,
) -> FaultRule:
    """Check the arguments of ``inject()`` and build the rule."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; use one of {FAMILIES}")
    if probability is not None and not 0.0 <= probability <= 1.0:
        raise ValueError("probability must be between 0 and 1")
    if count is not None and count < 0:
        raise ValueError("count must be >= 0")
    if status is not None and kind == "5xx" and not 500 <= status <= 599:
        raise ValueError("a 5xx fault needs a 5xx status")
    if path is not None:
        re.compile(path)
    return FaultRule(
        id=rule_id,
        kind=kind,  # type: ignore[arg-type]  # checked against FAULT_KINDS above
        family=family,  # checked against FAMILIES above
        path=path,
        method=method,
        probability=probability,
        count=count,
        status=status,
        delay=delay,
        apply_effect=apply_effect,
        sticky=sticky,
    )


def pick_fault(
    rules: list[FaultRule],
    rng: random.Random,
    method: str,
    path: str,
    family: Family,
    body: Any = None,
) -> tuple[FaultRule, bool] | None:
    """The first matching rule that fires, and whether it is a sticky rule's repeat; a new
    firing consumes the rule's count."""
    for rule in rules:
        if not rule.matches(method, path, family):
            continue
        key = rule.sticky_value(body)
        if key is not None and key in rule.stuck:
            return rule, True
        if rule.count is not None and rule.count <= 0:
            continue
        if rule.probability is not None and rng.random() >= rule.probability:
            continue
        if rule.count is not None:
            rule.count -= 1
        rule.fired += 1
        if key is not None:
            rule.stuck.add(key)
        return rule, False
    return None


def fault_status(rule: FaultRule, rng: random.Random) -> int | None:
    """The status a fired rule answers with (None: the normal handler answers)."""
    if rule.kind == "5xx":
        return rule.status or rng.choice((500, 502, 503))
    if rule.kind == "429":
        return 429
    if rule.kind == "400":
        return 400
    return None
