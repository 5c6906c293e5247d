"""What counts as drift between Brevo's contact and the last pushed projection."""

from __future__ import annotations

from typing import Any

import pytest

from calendly_brevo.drift import drift_of, same_value
from calendly_brevo.pushed import pushed_projection

PUSHED = pushed_projection(
    "ada@example.com",
    {"BOOKING_STATUS": "booked", "MEETING_DATE": "2030-01-10", "SMS": "+31612345678"},
    [10],
    "fp",
)


def contact(**attributes: Any) -> dict[str, Any]:
    base = {"BOOKING_STATUS": "booked", "MEETING_DATE": "2030-01-10", "SMS": "31612345678"}
    return {"attributes": {**base, **attributes}, "listIds": [10, 99]}


@pytest.mark.parametrize(
    ("pushed", "found", "same"),
    [
        ("booked", "booked", True),
        ("booked", "vip", False),
        ("2030-01-10", "2030-01-10T00:00:00.000Z", True),
        ("2030-01-10", "2030-01-11", False),
        (5, 5.0, True),
        (5, "5", True),
        ("5", "5.0", False),
        (True, "true", True),
        (True, False, False),
        ("+31612345678", "31612345678", True),
        ("booked", None, False),
        ("", None, True),
    ],
)
def test_values_compare_as_brevo_gives_them_back(pushed: Any, found: Any, same: bool) -> None:
    assert same_value(pushed, found) is same


def test_a_contact_as_pushed_has_no_drift_and_lists_the_config_does_not_name_are_ignored() -> None:
    assert not drift_of(PUSHED, contact(), frozenset({10, 11})).found


def test_an_sms_moved_to_the_fallback_attribute_is_not_drift() -> None:
    moved = contact(SMS=None, PHONE_TEXT="+31612345678")
    assert not drift_of(PUSHED, moved, frozenset({10}), "PHONE_TEXT").found
    assert drift_of(PUSHED, moved, frozenset({10}), None).attributes == {
        "SMS": ("+31612345678", None)
    }


def test_edits_deletions_and_managed_lists_are_drift() -> None:
    edited = {"attributes": contact(BOOKING_STATUS="vip")["attributes"], "listIds": [11]}
    drift = drift_of(PUSHED, edited, frozenset({10, 11}))
    assert drift.attributes == {"BOOKING_STATUS": ("booked", "vip")}
    assert (drift.lists_missing, drift.lists_extra) == ((10,), (11,))
    assert drift_of(PUSHED, None, frozenset()).deleted


def test_a_read_that_keeps_failing_is_a_failure_not_a_clean_bill() -> None:
    from calendly_brevo.drift import DriftCheck
    from calendly_brevo.errors import BrevoTransientError
    from calendly_brevo.ledger.memory import MemoryLedger
    from tests import payloads

    class Flaky:
        calls = 0

        def get_contact(self, identifier: str | int) -> dict[str, Any] | None:
            self.calls += 1
            if self.calls <= 3:
                raise BrevoTransientError("Brevo GET /contacts/{identifier}: HTTP 503", status=503)
            return contact()

    ledger = MemoryLedger()
    ledger.record_pushed(PUSHED)
    reader = Flaky()
    check = DriftCheck(ledger, payloads.settings(), reader, sleep=lambda _: None)
    summary = check.run(["ada@example.com", "nobody@example.com"])
    assert (summary.checked, summary.failures, summary.drifted, summary.not_pushed) == (1, 1, 0, 1)
    again = DriftCheck(ledger, payloads.settings(), reader, sleep=lambda _: None)
    assert again.run(["ada@example.com"]).failures == 0
