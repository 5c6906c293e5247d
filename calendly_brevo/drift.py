"""``resync --check``: where Brevo differs from what the connector last pushed (hand edits).

Each contact with a last pushed projection is read back (``GET /contacts/{email}``, through the
shared token bucket like every Brevo call) and compared with it; nothing is written. Drift is:

- **deleted**: Brevo no longer knows the contact;
- **attributes**: a pushed attribute whose value in Brevo differs (dates compared as
  ``YYYY-MM-DD``, numbers as numbers; an ``SMS`` the client moved to
  ``brevo.sms_fallback_attribute`` after a conflict counts as pushed);
- **lists missing**: a list the connector added that the contact is no longer on;
- **lists extra**: a list the config names (so the connector owns its membership) that the
  contact is on although the connector did not add it there.

Attributes the connector never pushed and lists it does not own are Brevo's business, not
drift. ``resync --all`` (or ``resync --email E --all``) repairs what this finds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from calendly_brevo.config import Settings
from calendly_brevo.errors import TransientError
from calendly_brevo.ledger import Ledger, PushedProjection
from calendly_brevo.logs import scrub_error
from calendly_brevo.mapping import managed_lists

#: Transient failures (429, 5xx, timeouts, a full bucket) of one read are retried this often.
TRANSIENT_TRIES = 3
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ContactReader(Protocol):
    """``GET /contacts/{identifier}`` (the Brevo client's ``get_contact``)."""

    def get_contact(self, identifier: str | int) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Drift:
    email: str
    deleted: bool = False
    #: Attribute → (last pushed, in Brevo).
    attributes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    lists_missing: tuple[int, ...] = ()
    lists_extra: tuple[int, ...] = ()

    @property
    def found(self) -> bool:
        return self.deleted or bool(self.attributes or self.lists_missing or self.lists_extra)

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "deleted": self.deleted,
            "attributes": {k: {"pushed": p, "brevo": b} for k, (p, b) in self.attributes.items()},
            "lists_missing": list(self.lists_missing),
            "lists_extra": list(self.lists_extra),
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def same_value(pushed: Any, found: Any) -> bool:
    """Whether Brevo's ``found`` is the value the connector pushed, as Brevo gives it back."""
    if pushed == found:
        return True
    if found is None or pushed is None:
        return pushed in (None, "") and found in (None, "")
    if isinstance(pushed, str) and _DATE.fullmatch(pushed) and isinstance(found, str):
        return found[:10] == pushed  # a date attribute may come back with a time
    if isinstance(pushed, bool) or isinstance(found, bool):
        return str(pushed).lower() == str(found).lower()
    a, b = _number(pushed), _number(found)
    both_text = isinstance(pushed, str) and isinstance(found, str)
    if a is not None and b is not None and not both_text:
        return a == b  # a number attribute: 5 and 5.0 and "5"
    if isinstance(pushed, str) and pushed.startswith("+") and isinstance(found, str | int):
        return pushed.lstrip("+") == str(found).lstrip("+")  # SMS, with or without the +
    return False


def drift_of(
    pushed: PushedProjection,
    contact: dict[str, Any] | None,
    owned: frozenset[int],
    sms_fallback: str | None = None,
) -> Drift:
    """How ``contact`` (Brevo's answer, ``None``: not found) differs from ``pushed``."""
    if contact is None:
        return Drift(pushed.email, deleted=True)
    attrs = contact.get("attributes") or {}
    changed: dict[str, tuple[Any, Any]] = {}
    for name, value in pushed.attributes.items():
        found = attrs.get(name)
        if name == "SMS" and found is None and sms_fallback:
            found = attrs.get(sms_fallback)  # the client's retry without SMS put it there
        if not same_value(value, found):
            changed[name] = (value, found)
    on = {int(i) for i in contact.get("listIds") or ()}
    added = set(pushed.list_ids)
    return Drift(
        pushed.email,
        attributes=changed,
        lists_missing=tuple(sorted(added - on)),
        lists_extra=tuple(sorted((on & owned) - added)),
    )


@dataclass
class CheckSummary:
    checked: int = 0
    #: Stored contacts the connector never pushed: nothing to compare.
    not_pushed: int = 0
    drifted: int = 0
    failures: int = 0
    drift: list[Drift] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "not_pushed": self.not_pushed,
            "drifted": self.drifted,
            "failures": self.failures,
            "drift": [d.as_dict() for d in self.drift],
            "errors": self.errors,
        }


@dataclass
class DriftCheck:
    ledger: Ledger
    settings: Settings
    reader: ContactReader
    limit: int | None = None
    sleep: Callable[[float], None] = time.sleep
    summary: CheckSummary = field(default_factory=CheckSummary)

    def run(
        self, emails: Iterable[str], progress: Callable[[], None] | None = None
    ) -> CheckSummary:
        owned = managed_lists(self.settings)
        fallback = self.settings.brevo.sms_fallback_attribute
        for email in emails:
            if self.limit is not None and self.summary.checked >= self.limit:
                break
            pushed = self.ledger.last_pushed(email)
            if pushed is None:
                self.summary.not_pushed += 1
            else:
                self._check(pushed, owned, fallback)
            if progress is not None:
                progress()
        return self.summary

    def _check(self, pushed: PushedProjection, owned: frozenset[int], fallback: str | None) -> None:
        s = self.summary
        s.checked += 1
        for tries in range(1, TRANSIENT_TRIES + 1):
            try:
                contact = self.reader.get_contact(pushed.email)
                break
            except TransientError as exc:
                if tries == TRANSIENT_TRIES:
                    s.failures += 1
                    s.errors.append(scrub_error(f"{type(exc).__name__}: {exc}"))
                    return
                self.sleep(min(exc.delay or float(tries), 30.0))
        drift = drift_of(pushed, contact, owned, fallback)
        if drift.found:
            s.drifted += 1
            s.drift.append(drift)
