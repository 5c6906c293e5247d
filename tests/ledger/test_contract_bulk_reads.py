"""The ledger contract, continued: the page reads of a bulk resync give, on every
implementation, exactly what the one-contact reads give, for many contacts at once."""

from __future__ import annotations

from datetime import UTC, datetime

from calendly_brevo.ledger import Ledger
from calendly_brevo.pushed import pushed_projection
from tests.ledger.conftest import A, B
from tests.ledger.test_contract import STEPS, by_key, by_uri, claim

NOBODY = "nobody@example.com"


def test_contact_states_of_a_page_equal_each_contacts_own_state(ledger: Ledger) -> None:
    for event_id, email, rec, mk in STEPS:
        claim(ledger, event_id, email=email, state=(rec, mk))
    states = ledger.contact_states([A, B, NOBODY, A])
    assert set(states) == {A, B}  # a contact with no record is left out
    for email in (A, B):
        records, marks = ledger.contact_state(email)
        assert by_uri(states[email][0]) == by_uri(records)
        assert by_key(states[email][1]) == by_key(marks)
    assert ledger.contact_states([]) == {}


def test_last_pushed_of_a_page_equals_each_contacts_own(ledger: Ledger) -> None:
    ledger.record_pushed(pushed_projection(A, {"BOOKING_STATUS": "booked"}, (10,), "fp", "ev1"))
    ledger.record_pushed(pushed_projection(B, {}, (), "fp", None))
    page = ledger.last_pushed_many([A, B, NOBODY])
    assert set(page) == {A, B}
    assert page[A] == ledger.last_pushed(A) and page[B] == ledger.last_pushed(B)
    assert page[A].pushed_at <= datetime.now(UTC)
